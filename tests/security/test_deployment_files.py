"""docker-compose.yml and docs/deployment.md cannot drift from the code: the compose file parses,
runs exactly the services the guide lists, sets only environment variables the settings read,
and its workers consume every queue a task can be routed to."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GUIDE = (ROOT / "docs" / "deployment.md").read_text()
SETTINGS = (ROOT / "config" / "settings.py").read_text()

APP_SERVICES = {name for name, service in COMPOSE["services"].items() if service.get("build") or "image" not in service}


def _variables_the_settings_read() -> set[str]:
    reader = r"(?:os\.environ\.get|os\.environ\[|env_bool|env_int|env_list)\(?\s*"
    names = set(re.findall(reader + r'"([A-Z][A-Z0-9_]*)"', SETTINGS))
    assert {"SECRET_KEY", "DATABASE_URL", "DJANGO_ENV"} <= names  # the pattern does find them
    return names


def _guide_services() -> list[str]:
    """The first column of the guide's process table."""
    section = GUIDE.split("## Processes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE)


def test_the_compose_file_runs_exactly_the_services_the_guide_lists():
    listed = _guide_services()

    assert listed, "the guide's process table is empty"
    assert sorted(listed) == sorted(COMPOSE["services"])
    for needed in ("postgres", "redis", "migrate", "web", "beat"):
        assert needed in COMPOSE["services"]


def test_every_variable_the_compose_file_sets_is_read_by_the_settings_and_in_the_guide():
    read = _variables_the_settings_read()
    for name in APP_SERVICES:
        environment = COMPOSE["services"][name]["environment"]
        assert isinstance(environment, dict), name
        unknown = set(environment) - read
        assert not unknown, f"{name} sets variables the settings never read: {sorted(unknown)}"
        undocumented = {variable for variable in environment if f"`{variable}`" not in GUIDE}
        assert not undocumented, f"docs/deployment.md does not mention {sorted(undocumented)}"


def test_the_app_services_run_in_production_mode_with_secrets_from_the_environment():
    for name in APP_SERVICES:
        environment = COMPOSE["services"][name]["environment"]
        assert environment["DJANGO_ENV"] == "production", name
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), name  # required, never a value
        assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"], name


def test_the_app_services_wait_for_the_migrations():
    for name in APP_SERVICES - {"migrate"}:
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert COMPOSE["services"]["migrate"]["command"][:3] == ["python", "manage.py", "migrate"]


def test_postgres_ends_idle_transactions():
    command = " ".join(COMPOSE["services"]["postgres"]["command"])

    assert "idle_in_transaction_session_timeout=" in command
    assert "idle_in_transaction_session_timeout" in GUIDE


def test_the_web_service_runs_the_asgi_server_and_probes_readiness():
    web = COMPOSE["services"]["web"]

    assert web["command"][0] == "daphne" and "config.asgi:application" in web["command"]
    assert "/ready" in " ".join(web["healthcheck"]["test"])


def test_the_workers_consume_every_queue_a_task_is_routed_to():
    consumed = set()
    beats = 0
    for service in COMPOSE["services"].values():
        command = service.get("command") or []
        if command[:4] == ["celery", "-A", "config", "worker"]:
            consumed.add(command[command.index("--queues") + 1])
        if command[:4] == ["celery", "-A", "config", "beat"]:
            beats += 1
    script = (
        "import json, django; django.setup(); from config.celery import app; app.loader.import_default_modules(); "
        "print(json.dumps({n: app.amqp.router.route({}, n)['queue'].name "
        "for n in app.tasks if not n.startswith('celery.')}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.update(CELERY_SPLIT_QUEUES="1", CELERY_BROKER_URL="redis://127.0.0.1:6379/12")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    routes = json.loads(result.stdout.strip().splitlines()[-1])

    assert beats == 1
    assert {"rewards.tasks.outbox_relay", "redemptions.tasks.redemption_fulfil"} <= set(routes)
    assert routes["rewards.tasks.outbox_relay"] == "events"
    assert routes["redemptions.tasks.redemption_fulfil"] == "redemptions"
    orphans = {task: queue for task, queue in routes.items() if queue not in consumed}
    assert not orphans, f"no worker consumes these tasks' queues: {orphans}"
