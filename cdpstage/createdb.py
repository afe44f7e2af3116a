"""Create the database named in DATABASE_URL if it does not exist (run before `migrate`)."""

import os
import sys

import dj_database_url
import psycopg
from psycopg import sql


def main() -> int:
    url = (
        os.environ.get("DATABASE_URL", "").strip() or "postgres://postgres@127.0.0.1:5432/cdpstage"
    )
    config = dj_database_url.parse(url)
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    name = config["NAME"]
    try:
        with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                sys.stdout.write(f"Created database {name}.\n")
    except psycopg.OperationalError as exc:
        sys.stderr.write(f"Cannot reach PostgreSQL for DATABASE_URL: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
