"""The code location's single entry point: manifest -> asset graph, with global policies set here.

Loading validates the manifest first (cycles, unknown references, depth, bounds), so a bad
manifest fails with a message naming the field before Dagster builds anything.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from pathlib import Path

from dagster import (
    AssetSelection,
    BetaWarning,
    Definitions,
    FreshnessPolicy,
    define_asset_job,
    multiprocess_executor,
)

from quant_assets.assets import build_assets
from quant_assets.assets.common import GraphContext, LakehouseResource
from quant_assets.config.manifest import Manifest, load_manifest
from quant_assets.data.calendars import rebalance_interval
from quant_assets.storage.lakehouse import default_root

# backfill_policy and partitioned checks are "beta" in Dagster 1.13; we pin the version and use
# them deliberately, so their warnings would only bury real ones in the UI's logs.
warnings.filterwarnings("ignore", category=BetaWarning)
# Runs hand their events to the instance in batches (one transaction per batch with the storage
# `dagster.yaml` configures, `quant_assets.assets.event_log`), and a single-run backfill plans each asset
# once for its whole partition range instead of once per partition. Trade-off of the latter: when a
# range run fails, its partitions show as missing rather than failed; the run itself shows the failure.
# (Dagster forms batches only when DAGSTER_EVENT_BATCH_SIZE is set; it reads it per event. Large
# enough that a ranged step's materialisations and a run's planned events each go in as one batch.
# Storages without a batch path loop over the batch, so this is harmless for the in-memory instance.)
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "100000")
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")

# One rebalance period plus a grace day: a lens not refreshed since the last rebalance is stale.
FRESHNESS_GRACE = dt.timedelta(days=1)


# Steps run in parallel processes forked from a server that has already imported the code location:
# a step then starts in a fraction of a second instead of paying 2-3 s of imports (pandas, polars,
# skfolio), which dominated single-date runs launched from the UI.
EXECUTOR = multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": ["quant_assets.definitions"]}}},
    name="forkserver_multiprocess",
)


def freshness_policy(manifest: Manifest) -> FreshnessPolicy:
    period = rebalance_interval(manifest.calendar)
    return FreshnessPolicy.time_window(fail_window=period + FRESHNESS_GRACE, warn_window=period)


def build_definitions(manifest: Manifest | None = None, lakehouse_root: str | Path | None = None) -> Definitions:
    manifest = manifest or load_manifest()
    ctx = GraphContext.of(manifest, freshness=freshness_policy(manifest))
    return Definitions(
        assets=build_assets(ctx),
        executor=EXECUTOR,
        resources={"lakehouse": LakehouseResource(root=str(lakehouse_root or default_root()))},
        jobs=[
            define_asset_job(
                "walk_forward",
                selection=AssetSelection.all(),
                description="Every asset of the graph: a backfill of it is a walk-forward backtest.",
            )
        ],
    )


defs = build_definitions()
