"""`python -m bench` (`make bench`): DESIGN.md section 6's figures against the common approach.

    python -m bench [--rows 200000] [--admin-rows 1000000] [--only import,build,admin]
                    [--import-export-rows 5000] [--bulk-create-rows 50000]
                    [--common-build-rows 50000] [--admin-runs 7] [--keep]

Runs in a database of its own (BENCH_DATABASE_URL, default cdpstage_makebench; re-created, then
dropped) and Redis database 15 (BENCH_REDIS_URL). Prints one table and writes the figures to
bench/results/latest.json. `--rows 10000000` measures the 10M-guest load instead of projecting it.
"""

import argparse
import shlex
import sys
from pathlib import Path

from bench.suite import STEPS, BenchError, Config, run


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = set(steps) - set(STEPS)
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(STEPS)}")
    return steps


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0].strip("`")
    )
    parser.add_argument(
        "--rows",
        type=_positive,
        default=defaults.rows,
        help="Guests in the file our import and build process (default %(default)s).",
    )
    parser.add_argument("--import-export-rows", type=_positive, default=defaults.import_export_rows)
    parser.add_argument("--bulk-create-rows", type=_positive, default=defaults.bulk_create_rows)
    parser.add_argument("--common-build-rows", type=_positive, default=defaults.common_build_rows)
    parser.add_argument(
        "--admin-rows",
        type=_positive,
        default=defaults.admin_rows,
        help="Guests in the table behind the change list (default %(default)s).",
    )
    parser.add_argument("--admin-runs", type=_positive, default=defaults.admin_runs)
    parser.add_argument("--only", type=_steps, default=STEPS, help="e.g. import,build")
    parser.add_argument("--results", type=Path, default=defaults.results_path)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database and files.")
    args = parser.parse_args(argv)
    config = Config(
        rows=args.rows,
        import_export_rows=args.import_export_rows,
        bulk_create_rows=args.bulk_create_rows,
        common_build_rows=args.common_build_rows,
        admin_rows=args.admin_rows,
        admin_runs=args.admin_runs,
        only=args.only,
        results_path=args.results,
        keep=args.keep,
        command=" ".join(["python -m bench", *map(shlex.quote, argv)]),
    )
    try:
        run(config)
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
