"""Smoke test of `make bench`: every step runs on tiny sizes and reports usable figures.

The figures themselves are not checked (timing goals belong in `make bench`); this only
proves that the bench runs the real code end to end, in its own database, and cleans up.
"""

import io
import json

import psycopg
import pytest
from django.conf import settings

from bench.suite import ADMIN_PAGES, ADMIN_STATES, Config, run

pytestmark = pytest.mark.integration


@pytest.fixture
def bench_config(tmp_path):
    """Tiny sizes and a database named after this test run's.

    Redis stays the bench's own database (BENCH_REDIS_URL, default 15), not this test run's:
    the bench empties its queues, which must not touch another test's jobs.
    """
    db = {**settings.DATABASES["default"], **settings.DATABASE_OWNER}
    name = f"{db.get('TEST', {}).get('NAME') or 'test_' + db['NAME']}_bench_smoke"
    # As the owner role: the bench creates and drops its database, and drops indexes and
    # foreign keys to measure the floors.
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return Config(
        rows=200,
        import_export_rows=50,
        bulk_create_rows=120,
        common_build_rows=150,
        admin_rows=2000,
        admin_runs=1,
        database_url=f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{name}",
        work_root=tmp_path / "work",
        results_path=tmp_path / "latest.json",
        command="python -m bench (smoke test)",
    )


def _database_exists(config: Config) -> bool:
    db = {**settings.DATABASES["default"], **settings.DATABASE_OWNER}
    name = config.database_url.rsplit("/", 1)[1]
    params = {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"]}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def test_bench_run_reports_every_step(bench_config):
    out = io.StringIO()

    report = run(bench_config, out=out)

    steps = report["steps"]
    assert set(steps) == {"import", "build", "load", "admin"}

    imported = steps["import"]
    assert imported["ours"]["rows"] == 200
    assert imported["ours"]["created"] == 200
    assert imported["ours"]["rate"] > 0
    assert imported["ours"]["peak_rss_mb"] > imported["ours"]["baseline_rss_mb"] > 0
    assert imported["common"]["django-import-export"]["rows"] == 50
    assert imported["common"]["bulk_create"]["rows"] == 120
    assert all(common["rate"] > 0 for common in imported["common"].values())
    assert (imported["mapped"]["rows"], imported["mapped"]["created"]) == (200, 200)
    assert imported["mapped"]["invalid"] == 0  # the mapping reads every guest as it should
    assert imported["floor"]["guests"] == 200
    assert imported["floor"]["rate"] > 0
    assert "as is" in imported["floor"]["variants"]
    assert "without child foreign keys" in imported["floor"]["variants"]
    assert imported["ours"]["python_us_per_row"] > 0

    built = steps["build"]
    assert built["ours"]["records"] == 200
    assert built["ours"]["files"] == 1
    assert built["ours"]["rate"] > 0
    assert built["ours"]["job_rate"] > 0
    assert built["ours"]["peak_rss_mb"] > 0
    (common,) = built["common"].values()
    assert common["records"] == 150
    assert common["rate"] > 0

    load = steps["load"]
    assert load["ours"]["seconds"] > 0
    assert load["common"]["seconds"] > 0
    assert load["ours"]["basis"] == "projected from 200 rows"

    admin = steps["admin"]
    assert admin["rows"] == 2000
    for state in ADMIN_STATES:
        for page in ADMIN_PAGES:
            for approach in ("ours", "common"):
                assert admin["states"][state][f"{page}_{approach}"]["median_ms"] > 0

    table = out.getvalue()
    for label in (
        "import CSV",
        "floor: re-COPY",
        "mapped import",
        "build gzip NDJSON",
        "10M-guest initial load",
        "admin change list",
    ):
        assert label in table
    assert "command: python -m bench (smoke test)" in table
    saved = json.loads(bench_config.results_path.read_text(encoding="utf-8"))
    assert set(saved["steps"]) == set(steps)
    assert not _database_exists(bench_config)
    assert not any(bench_config.work_root.iterdir())
