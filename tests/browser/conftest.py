"""Playwright driving Debian's Chromium (the machines cannot download Playwright's own build)."""

import os
import shutil
from pathlib import Path

import pytest

# Re-used as a fixture by journey_workers: forgets batch jobs of earlier sessions in Redis.
from tests.batches.conftest import _forget_old_jobs  # noqa: F401

# Playwright's sync API keeps an asyncio loop running in this thread, which makes Django refuse
# ORM calls from the test body ("SynchronousOnlyOperation"); the test really is synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium tries to reach Google's hosts at start; the machines have no internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Screens:
    """Numbered full-page screenshots (and the HTML) of the key steps, in a folder."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> Path:
        self.count += 1
        stem = self.folder / f"{self.count:02d}-{name}"
        self.page.screenshot(path=stem.with_suffix(".png"), full_page=True)
        stem.with_suffix(".html").write_text(self.page.content(), encoding="utf-8")
        return stem.with_suffix(".png")


@pytest.fixture
def screens(page, output_path):
    """Screenshots of the pages a test visits, kept as test artefacts: pytest-playwright's
    output folder for the test (test-results/<test>/screenshots; `--output` moves it)."""
    return Screens(page, Path(output_path) / "screenshots")


# pytest-playwright provides playwright, browser, context and page; these fixtures point it at
# Debian's Chromium and give every page the same window and patience.


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; run `make browser-deps`.")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def page(page):
    page.set_default_timeout(20_000)
    return page


@pytest.fixture
def admin_login(page, live_server):
    """Log a user in through the real admin login form."""

    def login(username: str, password: str) -> None:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")

    return login


# ---------------------------------------------------------------------------------------------
# The whole journey: role groups, the CDP sandbox and real workers behind the live server.


@pytest.fixture
def role_groups(db):
    """The four role groups of cdpstage.roles, as the data migration makes them.

    A transactional test (any earlier one in the session) flushes the tables, and with them
    the groups the migration created; the permissions come back with post_migrate.
    """
    from django.contrib.auth.models import Group, Permission

    from cdpstage.roles import ROLES

    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


@pytest.fixture
def delivery_history_hook(monkeypatch):
    """The guest page's delivery history as the app wires it (batches.admin registers it on
    import). tests/records/test_admin_review.py's hook test pops the Guest entry when it ends,
    which would leave the page saying "No deliveries yet." for any later test in the session."""
    from batches.admin import render_delivery_history
    from records.admin import delivery
    from records.models import Guest

    monkeypatch.setitem(delivery._delivery_history_renderers, Guest, render_delivery_history)


@pytest.fixture(scope="session")
def journey_sandbox(tmp_path_factory):
    """One HTTPS CDP sandbox process for the browser session (same options as the batches tests)."""
    from cdpsandbox.process import run_sandbox

    with run_sandbox(
        tmp_path_factory.mktemp("browser-sandbox"),
        processing_delay=0.05,
        identity_providers=["email", "CRM_ID"],
    ) as process:
        yield process


@pytest.fixture
def _forget_old_import_jobs():
    """Forget import jobs left in Redis by earlier sessions: import run ids start again at 1
    in a fresh test database, and an old `importrun-1-a1` hash would make the new enqueue a
    no-op (the batches counterpart is tests.batches.conftest._forget_old_jobs)."""
    import django_rq

    queue = django_rq.get_queue("imports")
    redis = queue.connection
    registries = (
        queue.started_job_registry,
        queue.scheduled_job_registry,
        queue.failed_job_registry,
        queue.finished_job_registry,
    )
    redis.delete(queue.key, f"{queue.key}:intermediate", *(r.key for r in registries))
    for key in redis.scan_iter(match="rq:job:importrun-*", count=1000):
        redis.delete(key)


@pytest.fixture
def journey_workers(
    journey_sandbox, _forget_old_import_jobs, clean_queues, tmp_path, request, settings, monkeypatch
):
    """A real `imports` worker and a real `batches` worker talking to the sandbox, running for
    the whole test, and the web side (live server) configured for the same sandbox (sending
    checks the credentials there); the workers' logs are printed when the test fails."""
    import sys

    from tests.batches.conftest import worker_settings
    from tests.processes import running_worker

    request.getfixturevalue("_forget_old_jobs")
    journey_sandbox.control.reset()
    settings.CDP_BASE_URL = journey_sandbox.base_url
    settings.CDP_CLIENT_KEY = journey_sandbox.client_key
    settings.CDP_API_TOKEN = journey_sandbox.api_token
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", journey_sandbox.ca_bundle)
    imports_log, batches_log = tmp_path / "worker-imports.log", tmp_path / "worker-batches.log"
    with (
        running_worker("imports", imports_log, RQ_MAINTENANCE_INTERVAL="1"),
        running_worker("batches", batches_log, **worker_settings(journey_sandbox)),
    ):
        yield journey_sandbox
    for log in (imports_log, batches_log):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        sys.stdout.write(f"--- {log.name} (last 60 lines) ---\n{tail}\n")
