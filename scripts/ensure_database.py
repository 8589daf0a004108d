"""Create the database DATABASE_URL names if the server does not have it yet, so that checks
run before the tests (makemigrations' history check) find it. The tests use their own
`test_` database beside it."""

import os
import sys

import dj_database_url
import psycopg
from psycopg import sql

config = dj_database_url.parse(os.environ["DATABASE_URL"])
if "postgresql" not in config["ENGINE"]:
    sys.exit(0)
params = {"host": config["HOST"] or "127.0.0.1", "port": config["PORT"] or 5432, "user": config["USER"] or "postgres"}
if config.get("PASSWORD"):
    params["password"] = config["PASSWORD"]
with psycopg.connect(dbname="postgres", autocommit=True, **params) as connection:
    exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
    if not exists:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
        print(f"==> created database {config['NAME']}")
