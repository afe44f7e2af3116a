"""`make run` as a user runs it: piped output, demo users printed last, Ctrl-C stops every child."""

import os
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from cdpstage.devrun import port_taken, read_procfile
from records.management.commands.demo_setup import DEMO_USERS

ROOT = Path(__file__).resolve().parent.parent.parent
BANNER = "Ctrl-C stops everything."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds the marker (every child of `make run`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().split(") ")[-1][0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def run_database():
    """A database of its own for `make run` (it migrates and imports the demo guests)."""
    name = f"test_cdpstage_makerun_{uuid.uuid4().hex[:12]}"
    params = {"host": "127.0.0.1", "user": "postgres", "dbname": "postgres", "autocommit": True}

    def drop() -> None:
        with psycopg.connect(**params) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    drop()
    # The default app role: `make run` creates the roles and the database, migrates as the
    # owner and runs everything else as the app role.
    yield f"postgres://cdpstage_app@127.0.0.1:5432/{name}"
    drop()


def test_procfile_names_every_service_and_reads_the_ports_from_the_environment():
    children = read_procfile(ROOT / "Procfile", ())
    assert [c.name for c in children] == ["web", "sandbox", "worker_imports", "worker_batches"]
    assert "${WEB_PORT:-8000}" in children[0].command
    assert "${SANDBOX_PORT:-8443}" in children[1].command


@pytest.mark.integration
def test_make_run_piped_prints_users_last_stays_quiet_and_ctrl_c_stops_every_child(
    run_database, tmp_path
):
    web_port, sandbox_port = free_port(), free_port()
    marker = f"DEVRUN_TEST_{uuid.uuid4().hex}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CDP_", "REQUESTS_CA_BUNDLE", "DJANGO_"))
    }
    env.update(
        {
            marker: "1",
            "DATABASE_URL": run_database,
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
            "WEB_PORT": str(web_port),
            "SANDBOX_PORT": str(sandbox_port),
            "SANDBOX_DIR": str(tmp_path / "sandbox"),
            # A maintenance pass every second: its log lines would show within the wait below.
            "RQ_MAINTENANCE_INTERVAL": "1",
        }
    )
    # Like a terminal: `make run | cat` in a process group of its own, which Ctrl-C signals
    # as a whole (make, the supervisor and cat, the reader of the pipe).
    process = subprocess.Popen(
        ["bash", "-c", "make --no-print-directory run | cat"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(raw.decode(errors="replace").rstrip()) for raw in process.stdout],
        daemon=True,
    ).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while not any(BANNER in line for line in output):
            assert time.monotonic() < deadline, "\n".join(output[-40:])
            assert process.poll() is None, "\n".join(output[-40:])
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        # Four maintenance passes per worker: none of them may print anything at INFO.
        time.sleep(4)
        while not lines.empty():
            output.append(lines.get())
        text = "\n".join(output)
        users = output.index("Demo users (DEMO ONLY - never use these on a real system):")
        started = [i for i, line in enumerate(output) if "Listening on" in line]
        assert len(started) == 2, text
        assert "Starting development server" in text
        assert max(started) < users, "the demo users were printed before the workers were up"
        after_users = [line for line in output[users:] if line.strip()]
        # The users, then the banner, and nothing after it: no worker line scrolls them away.
        assert after_users[-1].startswith("Open http://127.0.0.1:"), text
        assert f":{web_port}/admin/" in after_users[-1]
        assert len(after_users) == 1 + len(DEMO_USERS) + 1, text
        assert "stager@example.com" in text
        assert "cleaning registries" not in text
        assert port_taken(web_port)
        assert port_taken(sandbox_port)
        assert len(processes_with(marker)) >= 6  # bash, make, supervisor, cat, 4 services...
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftover = processes_with(marker)
    for pid in leftover:  # only processes this test started carry the marker
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], "a child of `make run` outlived Ctrl-C"
    assert not port_taken(web_port)
    assert not port_taken(sandbox_port)
