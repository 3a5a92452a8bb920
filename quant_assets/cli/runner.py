"""Run a range of the graph in one process: the headless backfill used by the CLI and tests.

One run covers every partition (period) holding a rebalance date of the range, and every selected
step executes once over all their dates (`BackfillPolicy.single_run()`), in dependency order, so a
walk-forward of N periods costs one step execution per asset group, not N.
"""

from __future__ import annotations

import datetime as dt
import uuid

from dagster import AssetSelection, DagsterError, DagsterInstance, Definitions, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from quant_assets.assets.run_guard import process_tags
from quant_assets.config.manifest import Manifest
from quant_assets.data.calendars import Periods, calendar_days_covering
from quant_assets.storage.lakehouse import Lakehouse


def partition_range(manifest: Manifest, start: dt.date, end: dt.date) -> tuple[str, str]:
    """First and last partitions (periods) holding a rebalance date in [start, end]; none is an error."""
    keys = Periods(manifest.calendar).keys_between(start, end)
    if not keys:
        raise ValueError(
            f"no rebalance date between {start} and {end} "
            f"(calendar {manifest.calendar.frequency} from {manifest.calendar.start})"
        )
    return keys[0], keys[-1]


def resolve_selection(defs: Definitions, selection: str | AssetSelection) -> set:
    """The asset keys a selection names; a malformed or empty selection is a ValueError saying so."""
    text = selection if isinstance(selection, str) else None
    try:
        if isinstance(selection, str):
            selection = AssetSelection.from_string(selection)
        graph = defs.resolve_asset_graph()
        # the implemented-weights CSVs are observable sources you provide, never materialised
        keys = set(selection.resolve(graph)) & set(graph.materializable_asset_keys)
    except DagsterError as e:
        raise ValueError(
            f"invalid asset selection {text or selection!r}: {str(e).splitlines()[0]} "
            "(examples: 'group:meta', '+flattened_weights_total_portfolio_hrp', 'key:sleeve_weights_*')"
        ) from e
    if not keys:
        raise ValueError(f"asset selection {text or selection!r} matches no asset")
    return keys


def materialize_range(
    defs: Definitions,
    manifest: Manifest,
    start: dt.date,
    end: dt.date,
    instance: DagsterInstance,
    selection: str | AssetSelection | None = None,
    raise_on_error: bool = True,
    run_config: dict | None = None,
) -> ExecuteInProcessResult:
    first, last = partition_range(manifest, start, end)
    job = defs.resolve_implicit_global_asset_job_def()
    if selection is not None:
        job = job.get_subset(asset_selection=resolve_selection(defs, selection))
    run_id = str(uuid.uuid4())
    return job.execute_in_process(
        instance=instance,
        run_id=run_id,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last, **process_tags(run_id)},
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def missing_warm_up(manifest: Manifest, lh: Lakehouse, start: dt.date, end: dt.date) -> list[str]:
    """Earlier periods the range's trailing windows read (its first date's price window, ~2 years)
    whose market data is not stored yet. A range starting mid-history on a fresh lakehouse needs
    them: the funnel and the sleeves read the window's returns from the lakehouse."""
    from quant_assets.assets.common import returns_name

    periods = Periods(manifest.calendar)
    first, _ = partition_range(manifest, start, end)
    reach = periods.dates(first)[0] - dt.timedelta(days=calendar_days_covering(manifest.lookbacks.prices_days + 1))
    keys = [k for k in periods.keys if periods.key(reach) <= k < first]
    stored = [set(lh.partitions("returns", returns_name(u))) for u in manifest.universes]
    return [k for k in keys if not all(k in s for s in stored)]


def warm_up_market_data(
    defs: Definitions,
    manifest: Manifest,
    lh: Lakehouse,
    start: dt.date,
    end: dt.date,
    instance: DagsterInstance,
    **kwargs,
) -> tuple[list[str], ExecuteInProcessResult | None]:
    """Materialise the market data of the earlier periods a range's trailing windows read when it is
    not stored (`missing_warm_up`): the CLI and the benchmarks start mid-history the same way.
    Returns those periods and the run (None when nothing was missing)."""
    warm_up = missing_warm_up(manifest, lh, start, end)
    if not warm_up:
        return [], None
    periods = Periods(manifest.calendar)
    first_start = periods.window(warm_up[0])[0]
    last_end = periods.window(warm_up[-1])[1] - dt.timedelta(days=1)
    result = materialize_range(defs, manifest, first_start, last_end, instance, selection="group:market_data", **kwargs)
    return warm_up, result


def dates_kept(result: ExecuteInProcessResult) -> dict[int, int]:
    """{dates kept as stored: how many assets kept that many} over a run's materialisations: a
    single-period run of the steps that resume (`Run.resume`) keeps the dates whose inputs did not
    change."""
    counts: dict[int, int] = {}
    for event in result.get_asset_materialization_events():
        value = event.step_materialization_data.materialization.metadata.get("dates_kept_as_stored")
        if value is not None:
            n = int(value.value)  # type: ignore[arg-type]  # an IntMetadataValue (Run.describe)
            counts[n] = counts.get(n, 0) + 1
    return dict(sorted(counts.items()))
