"""Create the database roles and the database of DATABASE_URL if missing (run before `migrate`).

As DATABASE_ADMIN_URL's role (one that may create roles and databases): the owner role of
DATABASE_OWNER_URL, the app role of DATABASE_URL, and the database, owned by the owner
(cdpstage.dbroles.roles_provision). Idempotent; passwords come from those URLs only.
"""

import sys

import psycopg

from cdpstage import dbconfig
from cdpstage.dbroles import roles_provision


def main() -> int:
    database = dbconfig.parse(dbconfig.app_url())["NAME"]
    try:
        done = roles_provision(
            admin=dbconfig.connect_params(dbconfig.admin_url()),
            app=dbconfig.connect_params(dbconfig.app_url()),
            owner=dbconfig.connect_params(dbconfig.owner_url()),
            database=database,
        )
    except psycopg.OperationalError as exc:
        sys.stderr.write(f"Cannot reach PostgreSQL as DATABASE_ADMIN_URL's role: {exc}\n")
        return 1
    except psycopg.errors.InsufficientPrivilege as exc:
        sys.stderr.write(
            f"DATABASE_ADMIN_URL's role may not create the roles or the database: {exc}\n"
        )
        return 1
    for line in done:
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
