"""Which PostgreSQL role connects for what, read from the environment (no Django imports).

Three roles (docs/security.md, "Database roles"):
- the **app role** (`DATABASE_URL`): the web processes, the workers and the commands; it owns
  nothing and holds only the privileges of `cdpstage.dbroles.APP_PRIVILEGES`;
- the **owner role** (`DATABASE_OWNER_URL`): owns the database, its schema and every table;
  `migrate` and `flush` connect as it (`cdpstage.dbroles.as_owner`);
- an **admin role** (`DATABASE_ADMIN_URL`): may create roles and databases; used only by
  `python -m cdpstage.createdb`, which provisions the other two.

Read by `cdpstage.settings` and by `cdpstage.createdb` (which runs before Django is set up).
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlsplit, urlunsplit

import dj_database_url

__all__ = [
    "APP_ROLE",
    "OWNER_ROLE",
    "admin_url",
    "app_url",
    "connect_params",
    "credentials",
    "owner_url",
    "parse",
]

APP_ROLE = "cdpstage_app"
OWNER_ROLE = "cdpstage_owner"
DEFAULT_APP_URL = f"postgres://{APP_ROLE}@127.0.0.1:5432/cdpstage"
# The keys of Django's connection settings that say who connects, and how, with their empty
# values (the database's NAME is the same for every role).
CREDENTIALS = {"USER": "", "PASSWORD": "", "HOST": "", "PORT": "", "OPTIONS": {}}


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _with_user(url: str, user: str, *, database: str | None = None) -> str:
    """`url` with its user (and password) replaced by `user` and no password."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    path = parts.path if database is None else f"/{database}"
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def app_url() -> str:
    """The app role's URL: `DATABASE_URL`, by default the local `cdpstage_app`."""
    return _env("DATABASE_URL") or DEFAULT_APP_URL


def owner_url() -> str:
    """The owner role's URL: `DATABASE_OWNER_URL`; unset, `cdpstage_owner` on DATABASE_URL's
    server and database when DATABASE_URL names the default app role, else DATABASE_URL itself
    (one role for everything, as before roles were split: it works, but the app can then
    disable the audit triggers)."""
    explicit = _env("DATABASE_OWNER_URL")
    if explicit:
        return explicit
    url = app_url()
    if urlsplit(url).username == APP_ROLE:
        return _with_user(url, OWNER_ROLE)
    return url


def admin_url() -> str:
    """A role that may create roles and databases: `DATABASE_ADMIN_URL`, by default `postgres`
    on DATABASE_URL's server (its `postgres` database)."""
    return _env("DATABASE_ADMIN_URL") or _with_user(app_url(), "postgres", database="postgres")


def parse(url: str) -> dict:
    """Django's connection settings for `url` (dj-database-url)."""
    return dj_database_url.parse(url)


def credentials(config: dict) -> dict:
    """Who connects, and how: the CREDENTIALS keys of Django connection settings `config`."""
    return {key: config.get(key) or empty for key, empty in CREDENTIALS.items()}


def connect_params(url: str) -> dict:
    """psycopg connection parameters of a database URL, without its database."""
    config = parse(url)
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        **config.get("OPTIONS", {}),
    }
    return {key: value for key, value in params.items() if value is not None}
