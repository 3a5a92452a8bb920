"""How long does a walk-forward backfill of the default graph take, and where does the time go?

Runs the whole default graph over a date range as one single-run backfill, in process, into a
temporary lakehouse, on an ephemeral Dagster instance (default: `ephemeral_instance()`, Dagster's
ephemeral instance with our in-memory event log; --stock-ephemeral: `DagsterInstance.ephemeral()`
as Dagster ships it) or a persistent one configured as `dagster.yaml` configures `make ui`'s
(--persistent), and reports wall time and milliseconds per rebalance date, the steps' durations
by kind, and the CPU time of the steps and of their workers (how busy the cores were); with
--profile, the share of time inside our asset steps versus Dagster (planning, events, storage),
measured with cProfile (ratios within one run are what count).

    .venv/bin/python -m benchmarks.backfill                       # the full history, 1992-2022
    .venv/bin/python -m benchmarks.backfill --stock-ephemeral      # Dagster's own in-memory event log
    .venv/bin/python -m benchmarks.backfill --persistent --profile
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import os
import pstats
import resource
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

from dagster import DagsterInstance

REPO = Path(__file__).resolve().parents[1]

warnings.filterwarnings("ignore")

# The asset step functions (the `def`s under `@multi_asset` in quant_assets/assets/): what the
# profile counts as ours (`test_graph.py` checks that it names every step of the default graph).
STEP_BODIES = ("universe_data", "funnel", "sleeve_lenses", "tournament", "meta_lenses", "orders")


def _body_seconds(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds inside each kind of asset step (the step functions of quant_assets/assets/)."""
    stats = pstats.Stats(profile)
    out: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "quant_assets/assets/" in filename and name in STEP_BODIES:
            out[name] += cumtime
    return out


def _step_seconds(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds of the run's steps by kind (universe, funnel, sleeve, tournament, meta, orders), as
    Dagster timed them (the step's own work, its events and checks)."""
    out: dict[str, float] = defaultdict(float)
    for s in instance.get_run_step_stats(run_id):
        if s.start_time is not None and s.end_time is not None:
            out[s.step_key.split("_")[0]] += s.end_time - s.start_time
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class FullCollections:
    """The garbage collector's full (oldest-generation) collections in this process while active:
    how many, and their seconds (`gc.callbacks`). The step runs here; its workers are other processes."""

    def __init__(self) -> None:
        self.count, self.seconds, self._start = 0, 0.0, 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)


class CpuUsage:
    """CPU time of this process (the steps) and of its reaped children (the steps' forked workers)
    since creation, and this process's involuntary context switches (`resource.getrusage`): how
    busy the cores were, and how often the steps' threads were preempted."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> tuple:
        me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return (me.ru_utime, me.ru_stime, children.ru_utime, children.ru_stime, me.ru_nivcsw)

    def since(self) -> tuple:
        """(user, kernel, workers' user, workers' kernel, involuntary context switches)."""
        return tuple(b - a for a, b in zip(self._start, self._now()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(1992, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2022, 12, 31))
    parser.add_argument(
        "--persistent",
        action="store_true",
        help="write to an on-disk SQLite instance (as `make demo` does) instead of an in-memory one",
    )
    parser.add_argument(
        "--stock-ephemeral",
        action="store_true",
        help="Dagster's DagsterInstance.ephemeral() (its in-memory event log) instead of ephemeral_instance()",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="measure the share inside asset bodies with cProfile (slows everything ~1.5x)",
    )
    args = parser.parse_args()

    from quant_assets.cli.runner import materialize_range, warm_up_market_data
    from quant_assets.config.manifest import load_manifest
    from quant_assets.data.calendars import rebalance_dates
    from quant_assets.definitions import build_definitions
    from quant_assets.storage.lakehouse import Lakehouse

    manifest = load_manifest()
    n_dates = len([d for d in rebalance_dates(manifest.calendar, args.end) if d >= args.start])
    with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as home:
        defs = build_definitions(manifest, root)
        if args.persistent:
            shutil.copy(REPO / "dagster.yaml", Path(home) / "dagster.yaml")
            os.environ["DAGSTER_HOME"] = home
            instance = DagsterInstance.from_config(home)
        elif args.stock_ephemeral:
            instance = DagsterInstance.ephemeral()
        else:
            from quant_assets.assets.event_log import ephemeral_instance

            instance = ephemeral_instance()
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        # a range starting mid-history first stores the market data its windows reach back to (untimed)
        t_warm = time.perf_counter()
        warm_up, _ = warm_up_market_data(
            defs, manifest, Lakehouse(root), args.start, args.end, instance, run_config=quiet
        )
        if warm_up:
            print(
                f"warm-up (untimed): market data of {warm_up[0]} .. {warm_up[-1]} "
                f"in {time.perf_counter() - t_warm:.1f} s"
            )
        profile = cProfile.Profile() if args.profile else None
        usage = CpuUsage()
        t0 = time.perf_counter()
        if profile:
            profile.enable()
        with FullCollections() as collections:
            result = materialize_range(
                defs,
                manifest,
                args.start,
                args.end,
                instance,
                run_config=quiet,
            )
        if profile:
            profile.disable()
        wall = time.perf_counter() - t0
        cpu = usage.since()
        steps = _step_seconds(instance, result.run_id)
    print(f"backfill {args.start} .. {args.end}: {n_dates} rebalance dates, success={result.success}")
    print(
        f"wall {wall:.1f} s = {1000 * wall / n_dates:.1f} ms per rebalance date, "
        + (
            "persistent (batched SQLite) instance"
            if args.persistent
            else "ephemeral instance, "
            + ("Dagster's in-memory event log" if args.stock_ephemeral else "our in-memory event log")
        )
        + (" (under cProfile)" if profile else "")
    )
    print("step durations (Dagster's) by kind: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    print(f"full garbage collections in the steps' process: {collections.count}, {collections.seconds:.2f} s")
    total = sum(cpu[:4])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(
        f"CPU: steps' process {cpu[0]:.1f} s user + {cpu[1]:.1f} s kernel, its workers {cpu[2]:.1f} + {cpu[3]:.1f} s: "
        f"{total:.1f} core-seconds, {total / (wall * cores):.0%} of {cores} cores; involuntary context switches "
        f"in the steps' process {cpu[4]:,}"
    )
    if profile:
        bodies = _body_seconds(profile)
        ours = sum(bodies.values())
        print(
            f"inside asset bodies {ours:.1f} s ({ours / wall:.0%}); Dagster and the rest "
            f"{wall - ours:.1f} s ({1 - ours / wall:.0%})"
        )
        for kind, secs in sorted(bodies.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:<24} {secs:6.1f} s  {secs / wall:5.1%}")


if __name__ == "__main__":
    main()
