"""How long does the weekly production update take on an instance that already holds history?

The update is: materialise the newest period's partition of every asset of the default graph (the
period holding the newest rebalance date), on the persistent instance `make ui` reads (Dagster's
SQLite storage with our batched event log, `dagster.yaml`), with the lakehouse already holding the
earlier periods. The benchmark first builds that history (`--history-start` to the period before
the newest; not timed), then times:

- in process: the run alone, as a long-lived process (a sensor, the UI's run worker) pays it;
- from the shell: `quant-assets backfill` over the newest date in a fresh process, as a cron job
  or a researcher pays it (process start and code-location load included);
- again: the same partition re-materialised (idempotent; replaces exactly its rows).

`--partition month` rebuilds the graph with monthly partitions (manifest `calendar.partition`), so
the update recomputes a month of rebalance dates instead of a year. `--breakdown` also times a
few entry points inside the in-process update (Dagster's event storage, the data versions it looks
up for provenance and checks, the run's creation, our Parquet writes); the rest is our per-date work
and Dagster's per-step bookkeeping.

    .venv/bin/python -m benchmarks.incremental                     # yearly partitions (default)
    .venv/bin/python -m benchmarks.incremental --partition month
    .venv/bin/python -m benchmarks.incremental --breakdown

Target: the update within 5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml

from benchmarks.backfill import _step_seconds
from quant_assets.config.manifest import default_manifest_path

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

warnings.filterwarnings("ignore")


# What --breakdown times: (owner module, class, method, label). Dagster is pinned (pyproject.toml);
# a method renamed by an upgrade fails here by name.
TIMED = [
    ("dagster._core.instance.methods.event_methods", "EventMethods", "handle_new_event", "Dagster: storing events"),
    (
        "dagster._core.execution.context.data_version_cache",
        "DataVersionCache",
        "fetch_external_input_asset_version_info",
        "Dagster: input data versions at step start",
    ),
    (
        "dagster._core.execution.context.data_version_cache",
        "DataVersionCache",
        "maybe_fetch_and_get_input_asset_version_info",
        "Dagster: data versions re-read for provenance and check targets",
    ),
    ("dagster._core.instance.runs.run_domain", "RunDomain", "create_run_for_job", "Dagster: creating the run"),
    ("quant_assets.assets.common", "Run", "write", "ours: Parquet writes"),
]


@contextmanager
def timed_entry_points():
    """Wrap each TIMED method with a timer; yields {label: [calls, seconds]}. Only the outermost timed
    call counts (the planned events stored while creating the run count as creating the run), so the
    labels' times add up."""
    import importlib

    totals: dict[str, list] = {label: [0, 0.0] for *_, label in TIMED}
    saved = []
    depth = [0]  # shared: a timed call inside another is its caller's time
    try:
        for module, cls_name, method, label in TIMED:
            owner = getattr(importlib.import_module(module), cls_name)
            original = getattr(owner, method)

            def timer(*args, _original=original, _label=label, **kwargs):
                depth[0] += 1
                t = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if not depth[0]:
                        totals[_label][0] += 1
                        totals[_label][1] += time.perf_counter() - t

            setattr(owner, method, functools.wraps(original)(timer))
            saved.append((owner, method, original))
        yield totals
    finally:
        for owner, method, original in saved:
            setattr(owner, method, original)


def _manifest_file(folder: Path, partition: str, end: dt.date | None = None) -> Path:
    """The default manifest with `partition` periods (and the calendar ending at `end`), written to `folder`."""
    data = yaml.safe_load(default_manifest_path().read_text())
    data["calendar"]["partition"] = partition
    if end is not None:
        data["calendar"]["end"] = end.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", choices=["year", "quarter", "month"], default="year")
    parser.add_argument(
        "--history-start",
        type=dt.date.fromisoformat,
        default=dt.date(2019, 1, 1),
        help="first date of the (untimed) history; the meta layer needs about a year of it",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time Dagster's events, data-version lookups, run creation, our writes"
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="the history ends with the previous period: the update computes every date of the newest one",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest_path = _manifest_file(tmp / "manifest", args.partition)
        home, lakehouse = tmp / "state" / "dagster_home", tmp / "state" / "lakehouse"
        home.mkdir(parents=True)
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {
            "DAGSTER_HOME": str(home),
            "QUANT_ASSETS_LAKEHOUSE": str(lakehouse),
            "QUANT_ASSETS_MANIFEST": str(manifest_path),
        }
        os.environ.update(env)

        from dagster import DagsterInstance

        from quant_assets.cli.runner import materialize_range

        try:
            from quant_assets.cli.runner import dates_kept
        except ImportError:  # an older package, run by this script for a before/after comparison
            dates_kept = lambda result: {}  # noqa: E731
        from quant_assets.config.manifest import load_manifest
        from quant_assets.data.calendars import Periods
        from quant_assets.definitions import build_definitions

        manifest = load_manifest(manifest_path)
        periods = Periods(manifest.calendar)
        newest_key = periods.keys[-1]
        newest_date = periods.dates(newest_key)[-1]
        if args.from_scratch:  # the history ends with the previous period
            history_manifest, history_end = (
                manifest,
                periods.window(periods.previous(newest_key))[1] - dt.timedelta(days=1),
            )
        else:  # the history holds the newest period up to the date before the newest: the calendar ended there
            history_manifest = load_manifest(_manifest_file(tmp / "history", args.partition, end=newest_date))
            history_end = newest_date - dt.timedelta(days=1)
        instance = DagsterInstance.from_config(str(home))

        t = time.perf_counter()
        history_defs = build_definitions(history_manifest, lakehouse)
        # A price window reaches ~2 years back (500 sessions): market data starts that much earlier.
        warmup = args.history_start.replace(year=args.history_start.year - 2)
        ok = materialize_range(
            history_defs,
            history_manifest,
            warmup,
            history_end,
            instance,
            selection="group:market_data",
            run_config=QUIET,
        ).success
        ok &= materialize_range(
            history_defs, history_manifest, args.history_start, history_end, instance, run_config=QUIET
        ).success
        print(
            f"history {args.history_start} .. {history_end} ({args.partition} partitions): "
            f"{time.perf_counter() - t:.1f} s, success={ok} (not timed)"
        )
        instance.dispose()
        # the state before the update, for the update from the shell
        before = tmp / "before"
        shutil.copytree(tmp / "state", before)
        instance = DagsterInstance.from_config(str(home))
        defs = build_definitions(manifest, lakehouse)

        n_dates = len(periods.dates(newest_key))
        scenario = "from scratch" if args.from_scratch else f"{newest_date} appended to the {n_dates - 1} stored"
        with timed_entry_points() if args.breakdown else nullcontext() as totals:
            t = time.perf_counter()
            update = materialize_range(defs, manifest, newest_date, newest_date, instance, run_config=QUIET)
            in_process = time.perf_counter() - t
        ok = update.success
        print(
            f"update, in process: partition {newest_key} ({n_dates} rebalance dates: {scenario}; every asset) "
            f"{in_process:.2f} s, success={ok}"
        )
        if kept := dates_kept(update):
            counts = ", ".join(f"{n} dates x {assets} assets" for n, assets in kept.items())
            print(f"  dates kept as stored by the steps that resume: {counts}")
        steps = _step_seconds(instance, update.run_id)
        print("update step durations (Dagster's) by kind: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
        if totals:
            print(f"update breakdown (of {in_process:.2f} s; the rest: our per-date work, Dagster's step bookkeeping):")
            for label, (calls, seconds) in totals.items():
                print(f"  {seconds:5.2f} s  {label} ({calls} calls)")
            dagster = sum(sec for label, (_, sec) in totals.items() if label.startswith("Dagster"))
            print(f"  {dagster:5.2f} s  Dagster, the timed entry points together ({dagster / in_process:.0%})")

        t = time.perf_counter()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "quant_assets.cli.main",
                "backfill",
                "--start",
                str(newest_date),
                "--end",
                str(newest_date),
            ],
            env={
                **os.environ,
                **env,
                "DAGSTER_HOME": str(before / "dagster_home"),
                "QUANT_ASSETS_LAKEHOUSE": str(before / "lakehouse"),
                "QUANT_ASSETS_PROGRESS": "0",
            },
            capture_output=True,
            text=True,
        )
        shell = time.perf_counter() - t
        if cli.returncode:
            raise SystemExit(f"quant-assets backfill failed:\n{cli.stdout}\n{cli.stderr}")
        print(
            f"update, from the shell (fresh process, `quant-assets backfill` of {newest_date}, "
            f"from the same state): {shell:.2f} s"
        )

        t = time.perf_counter()
        ok = materialize_range(defs, manifest, newest_date, newest_date, instance, run_config=QUIET).success
        again = time.perf_counter() - t
        print(f"update again, in process (nothing changed: the last date recomputed): {again:.2f} s, success={ok}")
        print(
            f"target {TARGET_SECONDS:.0f} s: in process {'met' if in_process <= TARGET_SECONDS else 'missed'}, "
            f"from the shell {'met' if shell <= TARGET_SECONDS else 'missed'}"
        )
        instance.dispose()


if __name__ == "__main__":
    main()
