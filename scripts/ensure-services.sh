#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL. When they are local,
# installed and stopped, start them; when they are missing, say so and fail.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}

hostport() { # URL -> "host port"
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  local host=${rest%%:*} port=${rest##*:}
  [ "$port" = "$rest" ] && port=$2
  echo "${host:-127.0.0.1} $port"
}

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() { # name host port
  for _ in $(seq 1 30); do answers "$2" "$3" && return 0; sleep 1; done
  return 1
}

is_local() { [[ $1 == 127.* || $1 == localhost || $1 == ::1 ]]; }

read -r pg_host pg_port < <(hostport "$DATABASE_URL" 5432)
read -r redis_host redis_port < <(hostport "$REDIS_URL" 6379)

if ! answers "$pg_host" "$pg_port"; then
  if is_local "$pg_host" && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
    wait_for PostgreSQL "$pg_host" "$pg_port" || { echo "PostgreSQL did not start at $pg_host:$pg_port" >&2; exit 1; }
  else
    echo "PostgreSQL is not reachable at $pg_host:$pg_port and is not installed here." >&2
    echo "Install it (apt-get install postgresql) or point DATABASE_URL at a running server." >&2
    exit 1
  fi
fi

if ! answers "$redis_host" "$redis_port"; then
  if is_local "$redis_host" && command -v redis-server >/dev/null; then
    echo "==> starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no
    wait_for Redis "$redis_host" "$redis_port" || { echo "Redis did not start at $redis_host:$redis_port" >&2; exit 1; }
  else
    echo "Redis is not reachable at $redis_host:$redis_port and is not installed here." >&2
    echo "Install it (apt-get install redis-server) or point REDIS_URL at a running server." >&2
    exit 1
  fi
fi
echo "==> PostgreSQL at $pg_host:$pg_port and Redis at $redis_host:$redis_port are up"
