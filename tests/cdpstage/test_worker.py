"""The worker's maintenance hook: reconcilers run, one failing does not stop the others."""

import logging

import pytest
from rq.exceptions import StopRequested

from cdpstage.worker import MaintenanceNoiseFilter, run_reconcilers

# run_reconcilers closes the process's database connections (a worker must not hand its
# socket to a forked work horse): allowed only outside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

CALLS: list[str] = []


def reconciler_ok() -> None:
    CALLS.append("ok")


def reconciler_broken() -> None:
    CALLS.append("broken")
    raise RuntimeError("boom")


def reconciler_stopped() -> None:
    raise StopRequested()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_run_reconcilers_goes_on_after_a_failing_one(settings, caplog):
    settings.RECONCILERS = [f"{__name__}.reconciler_broken", f"{__name__}.reconciler_ok"]

    run_reconcilers()

    assert CALLS == ["broken", "ok"]
    assert "Reconciler tests.cdpstage.test_worker.reconciler_broken failed" in caplog.text


def test_run_reconcilers_lets_a_shutdown_request_through(settings):
    # A SIGTERM during maintenance must stop the worker, not be logged as a failure.
    settings.RECONCILERS = [f"{__name__}.reconciler_stopped", f"{__name__}.reconciler_ok"]

    with pytest.raises(StopRequested):
        run_reconcilers()

    assert CALLS == []


def test_maintenance_lines_hidden_at_info_shown_at_debug():
    """RQ's every-pass "cleaning registries" lines: not at INFO (they bury the rest), at DEBUG."""
    noise = logging.LogRecord(
        "rq.worker", logging.INFO, __file__, 1, "Worker %s: cleaning group registries", ("w",), None
    )
    job = logging.LogRecord(
        "rq.worker", logging.INFO, __file__, 1, "%s: %s", ("imports", "job"), None
    )
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert MaintenanceNoiseFilter().filter(noise) is False
        assert MaintenanceNoiseFilter().filter(job) is True
        root.setLevel(logging.DEBUG)
        assert MaintenanceNoiseFilter().filter(noise) is True
        assert noise.levelname == "DEBUG"
    finally:
        root.setLevel(level)
