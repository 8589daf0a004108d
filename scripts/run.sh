#!/usr/bin/env bash
# Start the platform: an ASGI server (HTTP + WebSocket), the sandbox payment gateway (unless
# PAYMENT_GATEWAY_URL points at another), the sandbox fulfilment partner (unless
# REDEMPTION_PARTNER_URL points at another) and, when CELERY_BROKER_URL is set, a Celery worker
# with the beat scheduler. Ctrl-C stops everything.
set -euo pipefail
BIN=${VENV:-.venv}/bin
PORT=${PORT:-8000}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

GATEWAY_PORT=${PAYMENT_GATEWAY_PORT:-8025}
if [ -z "${PAYMENT_GATEWAY_URL:-}" ]; then
  echo "==> starting the sandbox payment gateway on http://127.0.0.1:$GATEWAY_PORT"
  "$BIN/python" -m rewards.payments.sandbox --port "$GATEWAY_PORT" --quiet &
  pids+=($!)
  export PAYMENT_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
else
  echo "==> payment gateway: $PAYMENT_GATEWAY_URL"
fi

PARTNER_PORT=${REDEMPTION_PARTNER_PORT:-8026}
if [ -z "${REDEMPTION_PARTNER_URL:-}" ]; then
  echo "==> starting the sandbox fulfilment partner on http://127.0.0.1:$PARTNER_PORT"
  "$BIN/python" -m redemptions.partners.sandbox --port "$PARTNER_PORT" --quiet &
  pids+=($!)
  export REDEMPTION_PARTNER_URL="http://127.0.0.1:$PARTNER_PORT"
  export REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS=1  # the sandbox listens on 127.0.0.1
else
  echo "==> fulfilment partner: $REDEMPTION_PARTNER_URL"
fi

if [ -n "${CELERY_BROKER_URL:-}" ]; then
  echo "==> starting a Celery worker (with beat) on $CELERY_BROKER_URL"
  "$BIN/celery" -A config worker --beat --loglevel INFO &
  pids+=($!)
else
  echo "==> no CELERY_BROKER_URL: background tasks run in-process"
fi

cat <<MSG

  Loyalty platform on http://127.0.0.1:$PORT
    API docs      http://127.0.0.1:$PORT/api/docs/
    Back office   http://127.0.0.1:$PORT/admin/   (logins printed above by seed_demo)
    Member app    http://127.0.0.1:$PORT/demo/    (the demo tenant's members, on the public API)
    Health        http://127.0.0.1:$PORT/health  /ready  /metrics
    Payments      sandbox gateway $PAYMENT_GATEWAY_URL (tokens tok_approve, tok_decline, tok_timeout, ...)
    Partners      sandbox fulfilment partner $REDEMPTION_PARTNER_URL (POST /_sandbox/mode {"mode": "fail"} to try an outage)

MSG
"$BIN/python" manage.py runserver "0.0.0.0:$PORT" &
pids+=($!)
wait -n "${pids[@]}"
