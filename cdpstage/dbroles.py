"""Database roles: what the app role may do, and connecting as the owner to change the schema.

The owner role owns the database, its schema, every table, sequence and function, so only it
can ALTER a table (DISABLE TRIGGER included), TRUNCATE, or drop things. The app role owns
nothing: it may SELECT, INSERT and UPDATE, DELETE only in the tables of APP_DELETES, and not
even UPDATE the append-only tables; it cannot set `session_replication_role` (superusers only).
`migrate` and `flush` connect as the owner (cdpstage/management/commands); after every migrate
`app_privileges_grant` re-applies the app role's privileges to every table, and default
privileges give tables of later migrations the same SELECT / INSERT / UPDATE.
`python -m cdpstage.createdb` creates both roles and the database (roles_provision).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from psycopg import sql

__all__ = [
    "APP_APPEND_ONLY",
    "APP_DELETES",
    "APP_READ_ONLY",
    "app_privileges_grant",
    "as_owner",
    "connect_as",
    "roles_provision",
    "table_analyze",
]

# The tables the app deletes rows from, and where; every other table refuses the app a DELETE.
APP_DELETES = {
    "django_session": "logout, a new session at login, clearsessions",
    "axes_accessattempt": "django-axes: a successful login or axes_reset clears the failures",
    "axes_accessattemptexpiration": "django-axes: goes with its attempt",
    "axes_accessfailurelog": "django-axes: old failure logs beyond its limit",
    "axes_accesslog": "django-axes: axes_reset_logs",
    "auth_user": "a superuser deletes a user in the admin",
    "auth_group": "a superuser deletes a group in the admin",
    "auth_user_groups": "taking a user out of a group",
    "auth_user_user_permissions": "taking a permission from a user",
    "auth_group_permissions": "taking a permission from a group (roles re-synced)",
    "django_admin_log": "goes with a deleted user (Django's own cascade)",
    "records_guest": "records.services.review.records_delete (never a delivered or locked one)",
    "records_trackingevent": "records.services.review.records_delete",
    "records_order": "records.services.review.records_delete (never a delivered or locked one)",
    "records_orderitem": "re-imports replace an order's items; deleting an order takes its items",
    "records_identifier": "re-imports replace a guest's children; retention; erasure",
    "records_subscription": "re-imports replace a guest's children; retention; erasure",
    "records_extension": "re-imports replace a guest's children; retention; erasure",
    "records_identityprovider": "records.services.identity.identity_provider_remove",
    "records_mapping": "a saved mapping deleted in the admin",
    "records_importrun": "a superuser deletes a run in the admin (one with events is protected)",
}
# Written once, never changed: the audit events and the suppression list of erased people.
APP_APPEND_ONLY = frozenset(
    {"batches_batchevent", "records_importrunevent", "records_suppressedidentity"}
)
# Read, never written, by the app: which migrations ran is the owner's business.
APP_READ_ONLY = frozenset({"django_migrations"})


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(current.get(key) == value for key, value in wanted.items())


def connect_as(credentials: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
    """Make `alias` (and every alias sharing its settings, e.g. a test mirror) connect with
    `credentials` (settings.DATABASE_APP or DATABASE_OWNER) from its next query on."""
    settings_dict = connections[alias].settings_dict
    if _same(settings_dict, credentials):
        return
    for name in connections:
        if connections[name].settings_dict is settings_dict:
            connections[name].close()
    settings_dict.update(credentials)


@contextmanager
def as_owner(alias: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Connect `alias` as the owner role for the block (a migrate, a flush), then as before."""
    settings_dict = connections[alias].settings_dict
    before = {key: settings_dict.get(key) for key in settings.DATABASE_OWNER}
    connect_as(settings.DATABASE_OWNER, alias)
    try:
        yield
    finally:
        connect_as(before, alias)


def table_analyze(cursor: Any, table: str) -> None:
    """Refresh the planner's statistics of `table` (our own temporary tables excepted).

    ANALYZE needs the table's owner; the app asks the owner's function cdpstage_analyze
    (cdpstage migration 0002), which analyses nothing but tables of our schema.
    """
    cursor.execute("SELECT cdpstage_analyze(%s::regclass)", [table])


def app_privileges_grant(*, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """Give the app role exactly its privileges on every table (post_migrate, as the owner).

    Nothing to do when the app connects as the owner itself (a one-role setup).
    """
    app = settings.DATABASE_APP["USER"]
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        if cursor.fetchone()[0] == app:
            return
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = sorted(row[0] for row in cursor.fetchall())
        role = sql.Identifier(app)
        statements = [
            sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role),
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(
                role
            ),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role),
            # Tables and sequences later migrations create (as this role) get the same.
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE"
                " ON TABLES TO {}"
            ).format(role),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(role),
        ]
        for table in tables:
            name = sql.Identifier(table)
            if table in APP_DELETES:
                statements.append(sql.SQL("GRANT DELETE ON {} TO {}").format(name, role))
            if table in APP_APPEND_ONLY:
                statements.append(sql.SQL("REVOKE UPDATE ON {} FROM {}").format(name, role))
            if table in APP_READ_ONLY:
                statements.append(sql.SQL("REVOKE INSERT, UPDATE ON {} FROM {}").format(name, role))
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))


# -- provisioning (python -m cdpstage.createdb: before Django, as the admin role) -----------


def _role_ensure(conn: psycopg.Connection, name: str, password: str, *, createdb: bool) -> bool:
    """Create login role `name` if missing, and hold it to no superuser, no role creation."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
    verb = "ALTER" if exists else "CREATE"
    options = "LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS " + (
        "CREATEDB" if createdb else "NOCREATEDB"
    )
    statement = sql.SQL(f"{verb} ROLE {{}} {options}").format(sql.Identifier(name))
    if password:
        # Client-side quoting: utility statements take no bound parameters.
        statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    conn.execute(statement)
    return not exists


ADOPT_SQL = """
SELECT c.relkind, c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relowner <> %(owner)s::regrole
UNION ALL
SELECT 'F', p.oid::regprocedure::text FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proowner <> %(owner)s::regrole
"""
ADOPT_KIND = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "TABLE"}


def _adopt(conn: psycopg.Connection, owner: str) -> int:
    """Hand the owner role what another role created in the schema (a database migrated before
    roles were split); a table's sequences follow it. Returns how many objects it took over."""
    schema_owner = conn.execute(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
    ).fetchone()[0]
    if schema_owner not in ("pg_database_owner", owner):
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    rows = conn.execute(ADOPT_SQL, {"owner": owner}).fetchall()
    for kind, name in rows:
        if kind == "F":
            # regprocedure text is already quoted and carries the argument types.
            target = sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
                sql.SQL(name), sql.Identifier(owner)
            )
        else:
            target = sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(ADOPT_KIND[kind]), sql.Identifier(name), sql.Identifier(owner)
            )
        conn.execute(target)
    return len(rows)


def roles_provision(
    *, admin: dict[str, Any], app: dict[str, Any], owner: dict[str, Any], database: str | None
) -> list[str]:
    """Create (idempotently) the owner and app roles and `database`, owned by the owner.

    `admin`, `app`, `owner` are psycopg connection parameters (the admin's may create roles and
    databases); passwords come from the app's and owner's URLs, i.e. the environment. A
    database that exists is handed to the owner with what is in it. `database` None: the roles
    only (the test suite, whose database pytest-django creates). Returns what it did.
    """
    done: list[str] = []
    one_role = app["user"] == owner["user"]
    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
        if not one_role:
            # CREATEDB: the test suite creates its own databases as the owner.
            if _role_ensure(conn, owner["user"], owner.get("password", ""), createdb=True):
                done.append(f"Created role {owner['user']} (owner).")
            if _role_ensure(conn, app["user"], app.get("password", ""), createdb=False):
                done.append(f"Created role {app['user']} (app).")
        if database is None:
            return done
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if not exists.fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(owner["user"])
                )
            )
            done.append(f"Created database {database}.")
        elif not one_role:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(database), sql.Identifier(owner["user"])
                )
            )
    if not one_role:
        with psycopg.connect(**admin, dbname=database, autocommit=True) as conn:
            adopted = _adopt(conn, owner["user"])
            if adopted:
                done.append(f"Handed {adopted} existing object(s) to {owner['user']}.")
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(app["user"])
                )
            )
    return done
