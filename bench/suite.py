"""The bench run: DESIGN.md section 6's steps, ours and the common approach, on the same data.

Everything happens in a database of its own (BENCH_DATABASE_URL, default `cdpstage_makebench`,
dropped and re-created at the start, dropped at the end unless --keep), a Redis database of
its own (BENCH_REDIS_URL) and a temporary folder, so a developer's data and queues are never
touched. Each measured step runs in a fresh process (bench.tasks) and its peak RSS is that
process's ru_maxrss as wait4() reports it when it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.data import (
    MAPPING_DOCUMENT,
    write_mapped_source,
    write_model_columns_csv,
    write_source,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "results" / "latest.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdpstage_makebench"
# Database 15: the helper slots and a developer's worker use 0-8.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
STEPS = ("import", "build", "admin")
TEN_MILLION = 10_000_000

# DESIGN.md section 6.
TARGETS: dict[str, dict[str, Any]] = {
    "import": {
        "rate": 50_000,
        "floor_share": 0.8,
        "python_us": 20,
        "rss_mb": 150,
        "text": ">= 0.8 x floor and >= 50,000 rows/s, peak RSS <= 150 MB",
    },
    "build": {"rate": 80_000, "rss_mb": 100, "text": ">= 80,000 records/s, peak RSS <= 100 MB"},
    "load": {"seconds": 6 * 60, "text": "< 6 min"},
    "admin": {"ms": 500, "text": "< 500 ms a page"},
}


class BenchError(Exception):
    """A bench step could not run (its process failed, or the setup is unsafe)."""


@dataclass
class Config:
    """What to measure and where; sizes are rows of the generated guest file."""

    rows: int = 200_000
    import_export_rows: int = 5_000
    bulk_create_rows: int = 50_000
    common_build_rows: int = 50_000
    admin_rows: int = 1_000_000
    admin_runs: int = 7
    only: tuple[str, ...] = STEPS
    database_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    )
    work_root: Path | None = None
    results_path: Path | None = RESULTS_PATH
    keep: bool = False
    command: str = "python -m bench"


def _mb(kib: float) -> float:
    """ru_maxrss (KiB) in MB (10^6 bytes), the unit of DESIGN.md's targets."""
    return kib * 1024 / 1e6


def _without_password(url: str) -> str:
    """A URL fit for output and the results file (no password)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _database_name(url: str) -> str:
    import dj_database_url

    return str(dj_database_url.parse(url)["NAME"])


def _admin_connection(url: str) -> Any:
    """An autocommit connection to the server's `postgres` database (to drop/create ours)."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    return psycopg.connect(
        dbname="postgres", autocommit=True, **{k: v for k, v in params.items() if v}
    )


def drop_database(url: str) -> None:
    """Drop the bench database if it exists (refuses any name without "bench" in it)."""
    from psycopg import sql

    name = _database_name(url)
    if "bench" not in name:
        raise BenchError(
            f"Refusing to drop database {name!r}: the bench database's name must contain "
            "'bench' (set BENCH_DATABASE_URL)."
        )
    with _admin_connection(url) as conn:
        # FORCE: a step killed by Ctrl-C may leave its backend behind for a moment. Only
        # connections to this bench-only database are ended.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class Runner:
    """Runs bench.tasks in child processes against the bench database, Redis and folder."""

    def __init__(self, config: Config, work: Path) -> None:
        self.work = work
        self.count = 0
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=config.database_url,
            REDIS_URL=config.redis_url,
            DJANGO_SETTINGS_MODULE="cdpstage.settings",
            # Production-like: no debug query log; a throw-away key for this run only.
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-only-" + os.urandom(24).hex(),
            DJANGO_SECURE="0",
            DJANGO_ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
            DJANGO_MEDIA_ROOT=str(work / "media"),
            DJANGO_LOG_LEVEL="WARNING",
        )
        self.env.pop("DJANGO_TEST_DATABASE_NAME", None)
        # One role does everything here, BENCH_DATABASE_URL's (it owns the bench database: the
        # floors drop indexes and foreign keys), not the roles of the developer's own database.
        self.env.pop("DATABASE_OWNER_URL", None)

    def command(self, *args: str) -> None:
        """Run a setup command (createdb, migrate) with the bench environment."""
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BenchError(
                f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
            )

    def task(self, name: str, **params: Any) -> dict[str, Any]:
        """Run one bench.tasks task in a new process; its result plus `peak_rss_mb`."""
        self.count += 1
        out = self.work / f"task-{self.count:02d}-{name}.json"
        log_path = self.work / f"task-{self.count:02d}-{name}.log"
        argv = [sys.executable, "-m", "bench.tasks", name, "--out", str(out)]
        argv += ["--params", json.dumps(params, default=str)]
        with log_path.open("wb") as log:
            child = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=log)
            try:
                _, status, usage = os.wait4(child.pid, 0)
            except BaseException:
                child.kill()
                child.wait()
                raise
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
            raise BenchError(f"Task {name} failed (exit {child.returncode}):\n{tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
        result["peak_rss_mb"] = _mb(usage.ru_maxrss)
        return result


def _rate(count: float, seconds: float | None) -> float:
    return count / seconds if seconds else 0.0


# -- steps -----------------------------------------------------------------------------------


def import_step(config: Config, runner: Runner, source: Path, say: Callable) -> dict[str, Any]:
    """Our import run vs django-import-export and bulk_create, each into an empty table."""
    ie_rows = min(config.import_export_rows, config.rows)
    bulk_rows = min(config.bulk_create_rows, config.rows)
    columns = runner.work / "guests-columns.csv"
    write_model_columns_csv(source, columns, ie_rows)

    ie = runner.task("import_export", reset=True, csv=columns)
    ie["rate"] = _rate(ie["rows"], ie["seconds"])
    say(f"  django-import-export: {ie['rate']:,.0f} rows/s ({ie['rows']:,} rows)")

    bulk = runner.task("bulk_create", reset=True, csv=source, rows=bulk_rows)
    bulk["rate"] = _rate(bulk["rows"], bulk["seconds"])
    say(f"  bulk_create: {bulk['rate']:,.0f} rows/s ({bulk['rows']:,} rows)")

    # The mapped import first: the build step builds from the rows the unmapped one
    # leaves.
    mapped_source = runner.work / "guests-crm-layout.csv"
    write_mapped_source(source, mapped_source, config.rows)
    mapped = runner.task("import_ours", reset=True, csv=mapped_source, mapping=MAPPING_DOCUMENT)
    mapped["rate"] = _rate(mapped["rows"], mapped["seconds"])
    say(
        f"  ours, mapped (a CRM layout through a mapping document): {mapped['rate']:,.0f} "
        f"rows/s, peak RSS {mapped['peak_rss_mb']:,.0f} MB ({mapped['rows']:,} rows)"
    )
    ours = runner.task("import_ours", reset=True, csv=source)
    ours["rate"] = _rate(ours["rows"], ours["seconds"])
    say(
        f"  ours (import run job): {ours['rate']:,.0f} rows/s, peak RSS "
        f"{ours['peak_rss_mb']:,.0f} MB ({ours['baseline_rss_mb']:,.0f} MB before the work) "
        f"({ours['rows']:,} rows, {ours['invalid']:,} invalid, "
        f"{ours['value_bytes']:,.0f} bytes of JSON a guest, "
        f"{ours['python_us_per_row']:,.1f} us of Python CPU a row)"
    )
    # The floor, on the rows our import just wrote (no reset in between).
    floor = runner.task("import_floor", work=runner.work)
    floor["rate"] = _rate(floor["guests"], floor["seconds"])
    for variant in floor["variants"].values():
        variant["rate"] = _rate(floor["guests"], variant["seconds"])
    say(
        f"  floor (re-COPY of those rows into the same tables): {floor['rate']:,.0f} guests/s; "
        f"ours / floor = {ours['rate'] / floor['rate']:.2f}"
    )
    for name, variant in floor["variants"].items():
        say(f"    {name}: {variant['rate']:,.0f} guests/s ({variant['saves_seconds']:+.2f} s)")

    target = TARGETS["import"]

    def met(result: dict[str, Any]) -> bool:
        return (
            result["rate"] >= target["rate"]
            and result["rate"] >= target["floor_share"] * floor["rate"]
            and result["peak_rss_mb"] <= target["rss_mb"]
        )

    return {
        "ours": ours,
        "mapped": mapped,
        "floor": floor,
        "common": {"django-import-export": ie, "bulk_create": bulk},
        "target": target["text"],
        "met": met(ours),
        "mapped_met": met(mapped),
    }


def build_step(
    config: Config, runner: Runner, source: Path, imported: bool, say: Callable
) -> dict[str, Any]:
    """Our batch build job vs objects -> json.dumps -> gzip.open -> MD5 by re-reading."""
    if not imported:
        say("  staging the guests first (our import, not measured here)")
        runner.task("import_ours", reset=True, csv=source)
    setup = runner.task("build_setup")
    ours = runner.task("build_ours", batch_id=setup["batch_id"], attempt=setup["attempt"])
    ours["job_rate"] = _rate(ours["records"], ours["seconds"])
    ours["rate"] = _rate(ours["records"], ours["export_seconds"])
    say(
        f"  ours (batch build job): export {ours['rate']:,.0f} records/s, whole job "
        f"{ours['job_rate']:,.0f} records/s, peak RSS {ours['peak_rss_mb']:,.0f} MB "
        f"({ours['baseline_rss_mb']:,.0f} MB before the work) ({ours['records']:,} records, "
        f"{ours['files']} file(s), {ours['bytes'] / 1e6:,.1f} MB)"
    )
    phases = ", ".join(
        f"{name} {seconds:,.1f} s" if seconds is not None else f"{name} ?"
        for name, seconds in ours["phases"].items()
    )
    say(f"    job phases: {phases} of {ours['seconds']:,.1f} s")
    rows = min(config.common_build_rows, setup["ready"])
    common = runner.task("build_common", path=runner.work / "common.ndjson.gz", rows=rows)
    common["rate"] = _rate(common["records"], common["seconds"])
    say(
        f"  json.dumps + gzip.open + MD5 re-read: {common['rate']:,.0f} records/s, peak RSS "
        f"{common['peak_rss_mb']:,.0f} MB ({common['records']:,} records, "
        f"{common['bytes'] / 1e6:,.1f} MB)"
    )
    target = TARGETS["build"]
    return {
        "ours": ours,
        "common": {"json.dumps + gzip.open + MD5 re-read": common},
        "target": target["text"],
        # The target is the whole job's (DESIGN.md section 6), not the export phase's.
        "met": ours["job_rate"] >= target["rate"] and ours["peak_rss_mb"] <= target["rss_mb"],
        "ten_million_seconds": TEN_MILLION / max(ours["job_rate"], 1e-9),
    }


def load_step(config: Config, imported: dict[str, Any], built: dict[str, Any]) -> dict[str, Any]:
    """The 10M-guest initial load (import + whole build job), measured or projected."""
    ours_import, ours_build = imported["ours"], built["ours"]
    measured = ours_import["rows"] >= TEN_MILLION
    scale = TEN_MILLION / max(ours_import["rows"], 1)
    seconds = (ours_import["seconds"] + ours_build["seconds"]) * scale
    basis = (
        f"measured at {ours_import['rows']:,} rows"
        if measured and scale == 1
        else f"projected from {ours_import['rows']:,} rows"
    )
    common_import = max(imported["common"].values(), key=lambda c: c["rate"])
    common_build = next(iter(built["common"].values()))
    common_seconds = TEN_MILLION / max(common_import["rate"], 1e-9)
    common_seconds += TEN_MILLION / max(common_build["rate"], 1e-9)
    return {
        "ours": {"seconds": seconds, "basis": basis},
        "common": {
            "seconds": common_seconds,
            "basis": (
                f"projected from {common_import['rows']:,} rows (fastest common import) + "
                f"{common_build['records']:,} rows (common build)"
            ),
        },
        "target": TARGETS["load"]["text"],
        "met": seconds < TARGETS["load"]["seconds"],
    }


ADMIN_STATES = {
    "fresh": "as loaded (analysed, not vacuumed)",
    "vacuumed": "vacuumed",
}
ADMIN_PAGES = {"unfiltered": "first page", "filtered": "filtered by status"}


def admin_step(config: Config, runner: Runner, say: Callable) -> dict[str, Any]:
    """The guest change list's first page at `admin_rows` guests, ours vs a full COUNT.

    Measured twice: right after the load (COUNT(*) must read the heap) and after VACUUM
    (COUNT(*) can use an index-only scan): the common approach's worst and best case.
    """
    fill = runner.task("admin_fill", reset=True, rows=config.admin_rows)
    say(
        f"  generated {fill['rows']:,} guests in {fill['seconds']:,.0f} s "
        f"(table with indexes: {fill['table_bytes'] / 1e9:,.2f} GB)"
    )
    states: dict[str, Any] = {}
    for state, label in ADMIN_STATES.items():
        if state == "vacuumed":
            runner.task("admin_vacuum")
        pages = runner.task("admin_pages", runs=config.admin_runs)
        states[state] = pages
        for page in ADMIN_PAGES:
            say(
                f"  {label}, {page}: ours {pages[f'{page}_ours']['median_ms']:,.0f} ms, "
                f"Django's default counting {pages[f'{page}_common']['median_ms']:,.0f} ms "
                f"(median of {config.admin_runs})"
            )
    limit = TARGETS["admin"]["ms"]
    return {
        "rows": fill["rows"],
        "table_bytes": fill["table_bytes"],
        "states": states,
        "target": TARGETS["admin"]["text"],
        "met": all(
            pages[f"{page}_ours"]["median_ms"] < limit
            for pages in states.values()
            for page in ADMIN_PAGES
        ),
    }


# -- the run ---------------------------------------------------------------------------------


def run(config: Config, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Run the selected steps; returns the report (also written to config.results_path)."""

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    unknown = set(config.only) - set(STEPS)
    if unknown:
        raise BenchError(f"Unknown steps: {', '.join(sorted(unknown))} (use {', '.join(STEPS)}).")
    if config.work_root is not None:
        config.work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cdp-bench-", dir=config.work_root))
    runner = Runner(config, work)
    started = time.time()
    load_before = os.getloadavg()
    steps: dict[str, Any] = {}
    say(
        f"bench database {_database_name(config.database_url)}, "
        f"Redis {_without_password(config.redis_url)}"
    )
    try:
        drop_database(config.database_url)
        runner.command("-m", "cdpstage.createdb")
        runner.command("manage.py", "migrate", "--no-input", "-v0")
        runner.task("prepare")
        source = work / "guests.csv"
        if "import" in config.only or "build" in config.only:
            t0 = time.monotonic()
            write_source(source, config.rows)
            say(
                f"generated {config.rows:,} guests, {source.stat().st_size / 1e6:,.1f} MB of "
                f"CSV, in {time.monotonic() - t0:,.1f} s"
            )
        if "import" in config.only:
            say("import CSV -> validated staging rows")
            steps["import"] = import_step(config, runner, source, say)
        if "build" in config.only:
            say("build gzip NDJSON + MD5")
            steps["build"] = build_step(config, runner, source, "import" in steps, say)
        if "import" in steps and "build" in steps:
            steps["load"] = load_step(config, steps["import"], steps["build"])
        if "admin" in config.only:
            say(f"admin change list at {config.admin_rows:,} guests")
            steps["admin"] = admin_step(config, runner, say)
    finally:
        if not config.keep:
            drop_database(config.database_url)
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept database {_database_name(config.database_url)} and folder {work}")
    report = {
        "command": config.command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": time.time() - started,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "gzip": {
            "codec": os.environ.get("CDP_GZIP_CODEC", "") or "isal",
            "level": os.environ.get("CDP_GZIP_LEVEL", "") or "2",
        },
        "config": {
            **{
                k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                for k, v in asdict(config).items()
            },
            "database_url": _without_password(config.database_url),
            "redis_url": _without_password(config.redis_url),
        },
        "steps": steps,
    }
    if config.results_path is not None:
        config.results_path.parent.mkdir(parents=True, exist_ok=True)
        config.results_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    say("")
    say(format_table(report))
    if config.results_path is not None:
        say(f"results: {config.results_path}")
    return report


# -- the table -------------------------------------------------------------------------------


def _ratio(ours: float, common: float) -> str:
    return f"{ours / common:,.1f}x" if ours and common else "-"


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """step | common approach (rate, sample) | ours (rate, peak RSS) | ratio | target | met?"""
    rows: list[list[str]] = []
    steps = report["steps"]
    if "import" in steps:
        step = steps["import"]
        ours = step["ours"]
        ours_text = (
            f"{ours['rate']:,.0f} rows/s, {ours['peak_rss_mb']:,.0f} MB ({ours['rows']:,} rows)"
        )
        for index, (name, common) in enumerate(step["common"].items()):
            rows.append(
                [
                    "import CSV -> validated staging rows" if index == 0 else "",
                    f"{name}: {common['rate']:,.0f} rows/s ({common['rows']:,} rows, "
                    f"{common['peak_rss_mb']:,.0f} MB)",
                    ours_text if index == 0 else '"',
                    _ratio(ours["rate"], common["rate"]),
                    step["target"] if index == 0 else "",
                    _yes(step["met"]) if index == 0 else "",
                ]
            )
        if "floor" in step:
            floor, mapped = step["floor"], step["mapped"]
            rows.append(
                [
                    "  floor: re-COPY of our rows, same tables",
                    f"{floor['rate']:,.0f} guests/s ({floor['guests']:,} guests)",
                    f"ours / floor = {ours['rate'] / floor['rate']:.2f}",
                    "",
                    f">= {TARGETS['import']['floor_share']} x floor",
                    _yes(ours["rate"] >= TARGETS["import"]["floor_share"] * floor["rate"]),
                ]
            )
            rows.append(
                [
                    "  mapped import (CRM layout + mapping)",
                    f"unmapped (ours): {ours['rate']:,.0f} rows/s",
                    f"{mapped['rate']:,.0f} rows/s, {mapped['peak_rss_mb']:,.0f} MB "
                    f"({mapped['rows']:,} rows)",
                    _ratio(mapped["rate"], ours["rate"]),
                    step["target"],
                    _yes(step["mapped_met"]),
                ]
            )
            rows.append(
                [
                    "  Python CPU a row (cleaning + COPY writing)",
                    "",
                    f"{ours['python_us_per_row']:,.1f} us unmapped, "
                    f"{mapped['python_us_per_row']:,.1f} us mapped",
                    "",
                    f"<= {TARGETS['import']['python_us']} us",
                    _yes(ours["python_us_per_row"] <= TARGETS["import"]["python_us"]),
                ]
            )
    if "build" in steps:
        step = steps["build"]
        ours = step["ours"]
        name, common = next(iter(step["common"].items()))
        common_text = (
            f"{name}: {common['rate']:,.0f} records/s ({common['records']:,} rows, "
            f"{common['peak_rss_mb']:,.0f} MB)"
        )
        rows.append(
            [
                "build gzip NDJSON + MD5 (whole job: select, export, items)",
                common_text,
                f"{ours['job_rate']:,.0f} records/s, {ours['peak_rss_mb']:,.0f} MB "
                f"({ours['records']:,} records)",
                _ratio(ours["job_rate"], common["rate"]),
                step["target"],
                _yes(step["met"]),
            ]
        )
        rows.append(
            [
                "  export phase alone (stream -> gzip + MD5 -> stored file)",
                '"',
                f"{ours['rate']:,.0f} records/s, same process",
                _ratio(ours["rate"], common["rate"]),
                "(informative)",
                "",
            ]
        )
        rows.append(
            [
                "  10M-record build, projected from the whole job",
                '"',
                _duration(step["ten_million_seconds"]),
                "",
                "(part of the 10M load)",
                "",
            ]
        )
    if "load" in steps:
        step = steps["load"]
        rows.append(
            [
                "10M-guest initial load (import + build)",
                f"{_duration(step['common']['seconds'])} ({step['common']['basis']})",
                f"{_duration(step['ours']['seconds'])} ({step['ours']['basis']})",
                _ratio(step["common"]["seconds"], step["ours"]["seconds"]),
                step["target"],
                _yes(step["met"]),
            ]
        )
    if "admin" in steps:
        step = steps["admin"]
        for state, state_label in ADMIN_STATES.items():
            pages = step["states"][state]
            for page, label in ADMIN_PAGES.items():
                ours, common = pages[f"{page}_ours"], pages[f"{page}_common"]
                rows.append(
                    [
                        f"admin change list, {step['rows']:,} guests {state_label}, {label}",
                        f"full COUNT: {common['median_ms']:,.0f} ms",
                        f"{ours['median_ms']:,.0f} ms",
                        _ratio(common["median_ms"], ours["median_ms"]),
                        step["target"],
                        _yes(ours["median_ms"] < TARGETS["admin"]["ms"]),
                    ]
                )
    return rows


NOTES = (
    "How each figure is made (one process per measured step, same generated guests):",
    "- ours, import: the import run job (records.jobs.import_run_execute) in-process: read,"
    " map, validate every row with the CDP rules, COPY into staging with the children.",
    "- floor: the rows our import wrote, copied out and COPYed back into the same four tables"
    " (indexes, foreign keys checked immediately) in a rolled-back transaction; variants drop"
    " the child foreign keys or one guest index each, to price them.",
    "- mapped: the same guests in a CRM's layout (own names, M/F, dd.mm.yyyy, a country name,"
    " 1/0 opt-in) through a mapping document (bench/data.py MAPPING_DOCUMENT).",
    "- django-import-export: ModelResource.import_data with default settings over the 15 Guest"
    " columns (import_id_fields = identity_key); no children, no CDP validation.",
    "- bulk_create: csv.DictReader -> Guest, Identifier, Subscription and Extension objects held"
    " in lists -> bulk_create(batch_size=1000) in one transaction; no validation.",
    "- ours, build: the batch build job (batches.jobs.batch_build) in-process, judged by the"
    " whole job: select the records (batch memberships), stream -> gzip NDJSON + MD5 ->"
    " stored file, write the batch items (the 10M load uses it). Export phase = the job's own"
    " timing of the stream part alone.",
    "- json.dumps + gzip.open + MD5 re-read: Guest objects with prefetched children (no"
    " .iterator()), value rebuilt from them, gzip.open's default level 9, MD5 of the file"
    " read back.",
    "- admin: GuestAdmin's change list through Django's test Client as a superuser, median"
    " after one warm-up request; full COUNT = the same admin with Django's Paginator and"
    " show_full_result_count=True.",
)


def format_table(report: dict[str, Any]) -> str:
    """The report as one plain-text table, with the command and the machine's load."""
    header = ["step", "common approach (rate, sample)", "ours (rate, peak RSS)", "ratio"]
    header += ["target", "met?"]
    rows = [header, *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    before = ", ".join(f"{x:.2f}" for x in report["load_before"])
    after = ", ".join(f"{x:.2f}" for x in report["load_after"])
    lines += ["", *NOTES, ""]
    lines += [
        f"command: {report['command']}",
        f"{report['cpus']} CPUs; load average before {before}, after {after}; "
        f"took {_duration(report['seconds'])}; gzip {report['gzip']['codec']} level "
        f"{report['gzip']['level']}",
        "ratio = ours / common (rates) or common / ours (times); peak RSS = the measuring "
        "process's ru_maxrss (Python + Django + the work), MB = 10^6 bytes.",
    ]
    return "\n".join(lines)
