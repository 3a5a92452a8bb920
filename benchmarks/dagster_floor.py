"""Dagster's own cost per asset partition: the floor under any partition design.

Trivial assets (no body, no IO manager), the default graph's shape (135 keys, in steps of a few
keys each), one single-run backfill over the whole bundled history, for a partition period and an
instance kind; then the newest partition alone (the incremental update). What remains is Dagster:
planning, events, storage. Every partition design the research-speed work considered is measured
here, in one process each so the numbers compare:

    .venv/bin/python -m benchmarks.dagster_floor --period year --store memory sqlite batched
    .venv/bin/python -m benchmarks.dagster_floor --period week --years 2 --store batched   # extrapolated

`--store`: `memory` = DagsterInstance.ephemeral(); `fast-memory` = the same with
`quant_assets.assets.event_log.FastInMemoryEventLogStorage` and event batching on
(`ephemeral_instance()`, what the tests and `benchmarks.backfill` use); `sqlite` = Dagster's on-disk SQLite instance;
`batched` = the same with `quant_assets.assets.event_log.BatchingSqliteEventLogStorage` and event
batching on (what `dagster.yaml` configures); `postgres` = dagster-postgres against a server at
$QUANT_ASSETS_BENCH_PG (e.g. postgresql://postgres@127.0.0.1:5433/dagster), with batching on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG  # noqa: E402

PERIODS = {
    "year": ("0 0 1 1 *", "%Y"),
    "quarter": ("0 0 1 */3 *", "%Y-%m"),
    "month": ("0 0 1 * *", "%Y-%m"),
    "week": ("0 0 * * 5", "%Y-%m-%d"),
}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def trivial_graph(n_keys: int, keys_per_step: int, period: str, start: dt.datetime, end: dt.datetime):
    cron, fmt = PERIODS[period]
    partitions = dg.TimeWindowPartitionsDefinition(cron_schedule=cron, start=start, end=end, fmt=fmt)
    keys = [f"a{i}" for i in range(n_keys)]
    steps, previous = [], None
    for i in range(0, n_keys, keys_per_step):
        group = keys[i : i + keys_per_step]
        specs = [dg.AssetSpec(k, deps=[previous] if previous else [], partitions_def=partitions) for k in group]

        @dg.multi_asset(
            specs=specs,
            name=f"step_{i}",
            partitions_def=partitions,
            can_subset=True,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )
        def _step(context):
            for key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key, metadata={"rows": 1})

        steps.append(_step)
        previous = group[-1]
    return dg.Definitions(assets=steps), partitions


def instance_for(store: str, home: str) -> dg.DagsterInstance:
    if store == "memory":
        return dg.DagsterInstance.ephemeral()
    if store == "fast-memory":
        from quant_assets.assets.event_log import ephemeral_instance

        return ephemeral_instance()
    config = ""
    if store == "batched":
        config = (
            "event_log_storage:\n  module: quant_assets.assets.event_log\n  class: BatchingSqliteEventLogStorage\n"
            f"  config:\n    base_dir: {home}/storage\n"
        )
    elif store == "postgres":
        url = os.environ["QUANT_ASSETS_BENCH_PG"]
        config = f"storage:\n  postgres:\n    postgres_url: {url}\n"
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        f.write(config)
    return dg.DagsterInstance.from_config(home)


def measure(period: str, store: str, n_keys: int, keys_per_step: int, start: dt.datetime, end: dt.datetime) -> dict:
    if store in ("batched", "postgres", "fast-memory"):
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "100000"
    else:
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
    defs, partitions = trivial_graph(n_keys, keys_per_step, period, start, end)
    keys = partitions.get_partition_keys()
    job = defs.resolve_implicit_global_asset_job_def()
    home = tempfile.mkdtemp()
    try:
        instance = instance_for(store, home)
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            run_config=QUIET,
            tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        )
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        last = job.execute_in_process(instance=instance, partition_key=keys[-1], run_config=QUIET)
        newest = time.perf_counter() - t0
        assert result.success and last.success
        if store == "postgres":
            instance.wipe()
        instance.dispose()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    n = n_keys * len(keys)
    return {
        "period": period,
        "store": store,
        "keys": n_keys,
        "steps": -(-n_keys // keys_per_step),
        "partitions": len(keys),
        "asset_partitions": n,
        "range_s": full,
        "ms_per_asset_partition": 1000 * full / n,
        "newest_partition_s": newest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", choices=list(PERIODS), nargs="+", default=["year"])
    parser.add_argument(
        "--store", choices=["memory", "fast-memory", "sqlite", "batched", "postgres"], nargs="+", default=["memory"]
    )
    parser.add_argument("--keys", type=int, default=135, help="asset keys (the default graph without tournaments)")
    parser.add_argument("--keys-per-step", type=int, default=10)
    parser.add_argument("--years", type=int, default=31, help="history span ending 2022 (31 = 1992-2022)")
    args = parser.parse_args()
    end = dt.datetime(2023, 1, 1)
    start = dt.datetime(2023 - args.years, 1, 1)
    full_history_partitions = {"year": 31, "quarter": 124, "month": 372, "week": 1617}
    for period in args.period:
        for store in args.store:
            r = measure(period, store, args.keys, args.keys_per_step, start, end)
            scale = full_history_partitions[period] * args.keys / r["asset_partitions"]
            print(
                f"{r['period']:>7} x {r['partitions']:>4} partitions, {r['keys']} keys in {r['steps']} steps, "
                f"{r['store']:>11}: {r['range_s']:7.1f} s = {r['ms_per_asset_partition']:5.2f} ms per asset partition"
                + (f" (full history ~{r['range_s'] * scale:.0f} s)" if abs(scale - 1) > 1e-9 else "")
                + f"; newest partition alone {r['newest_partition_s']:.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
