"""Project-wide fixtures: the database roles, media in a temp folder, clean RQ queues, users."""

from contextlib import suppress

import django_rq
import psycopg
import pytest
from django.conf import settings

from cdpstage import dbconfig
from cdpstage.dbroles import connect_as, roles_provision


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """pytest-django creates, migrates and at the end drops the test database as the owner role,
    like `make migrate` (the app role may not); the roles are made first if missing."""
    # No admin role (a CI whose roles were made beforehand): use the roles as they are.
    with suppress(psycopg.OperationalError, psycopg.errors.InsufficientPrivilege):
        roles_provision(
            admin=dbconfig.connect_params(dbconfig.admin_url()),
            app=dbconfig.connect_params(dbconfig.app_url()),
            owner=dbconfig.connect_params(dbconfig.owner_url()),
            database=None,
        )
    connect_as(settings.DATABASE_OWNER)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Then every test connects as the app role, like the web processes and the workers do."""
    with django_db_blocker.unblock():
        connect_as(settings.DATABASE_APP)
    yield
    with django_db_blocker.unblock():
        connect_as(settings.DATABASE_OWNER)


@pytest.fixture(autouse=True)
def _media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # The default PBKDF2 costs ~0.3 s a user; tests create many. Never used outside tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _identity_providers(request):
    """The providers the first migrate seeds, again after a transactional test's flush emptied
    every table (data migrations do not survive a flush)."""
    wants_db = request.node.get_closest_marker("django_db") is not None
    for name in ("transactional_db", "db"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
            wants_db = True
            break
    if wants_db:
        from records.services.identity import identity_providers_seed

        identity_providers_seed()


@pytest.fixture
def clean_queues():
    """Empty our queues and their registries so a test sees only the jobs it enqueued.

    Keys are deleted directly: RQ 3's StartedJobRegistry has no `remove` (its entries are
    `job_id:execution_id`), and a killed worker's test can leave entries there.
    """
    for name in settings.RQ_QUEUE_NAMES:
        queue = django_rq.get_queue(name)
        queue.empty()
        for registry in (
            queue.scheduled_job_registry,
            queue.failed_job_registry,
            queue.finished_job_registry,
            queue.started_job_registry,
            queue.deferred_job_registry,
        ):
            for job_id in registry.get_job_ids(cleanup=False):
                queue.connection.delete(queue.job_class.key_for(job_id))
            queue.connection.delete(registry.key)
        queue.connection.delete(queue.intermediate_queue_key)


def role_group(name: str):
    """The role group `name` as cdpstage.roles defines it, made again if a transactional test's
    flush removed it (data migrations do not survive a flush; permissions do, via post_migrate).
    """
    from django.contrib.auth.models import Group, Permission

    from cdpstage.roles import ROLES

    group, _ = Group.objects.get_or_create(name=name)
    wanted = []
    for perm in ROLES[name]:
        app_label, codename = perm.split(".")
        wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    group.permissions.set(wanted)
    return group


@pytest.fixture
def user_factory(db, django_user_model):
    def make(username: str, *, perms: tuple[str, ...] = (), groups: tuple[str, ...] = (), **kw):
        from django.contrib.auth.models import Permission

        user = django_user_model.objects.create_user(
            username=username, password="pw-" + username, **kw
        )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        for name in groups:
            user.groups.add(role_group(name))
        return user

    return make
