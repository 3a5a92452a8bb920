"""Plumbing shared by every asset step: asset names, the run's partitions, writes, metadata, checks.

An asset *step* is one subsettable multi-asset: the keys that are always computed together (a
universe's market data, a sleeve's funnel, a sleeve's lenses, a meta lens). Every step follows one
pattern (`Run`): take the run's partitions (one period, or a range in a single-run backfill), read
each input once for the whole span (plus the earlier periods a trailing window reaches into),
compute every rebalance date in one pass, write one Parquet file per table and partition, and
describe each partition in its own metadata. Keys of the step that are not selected are read from
the lakehouse instead of being recomputed, so a UI subset materialises exactly what it selected.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetSpec,
    BackfillPolicy,
    ConfigurableResource,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from quant_assets.assets import reuse
from quant_assets.assets.run_guard import refuse_overlapping_runs
from quant_assets.audit.ledger import AuditLedger
from quant_assets.config.manifest import Manifest
from quant_assets.data.calendars import (
    PERIOD_CRON,
    PERIOD_FORMAT,
    Periods,
    calendar_days_covering,
    next_period_start,
    period_start,
)
from quant_assets.naming import (  # noqa: F401  (re-exported: the factories name assets through common)
    candidates_name,
    cluster_sensitivity_name,
    clusters_name,
    features_name,
    flattened_name,
    implemented_name,
    meta_portfolio_returns_name,
    meta_returns_name,
    meta_tree_name,
    meta_weights_name,
    orders_name,
    prices_name,
    rankings_name,
    regime_name,
    report_name,
    returns_name,
    selection_name,
    sleeve_returns_name,
    sleeve_weights_name,
    tournament_name,
    vetoes_name,
)
from quant_assets.storage.lakehouse import Lakehouse
from quant_assets.storage.schemas import TABLES

SINGLE_RUN = BackfillPolicy.single_run()


class LakehouseResource(ConfigurableResource):
    """Dagster resource pointing at the lakehouse root (tests pass a temporary directory)."""

    root: str

    def get(self) -> Lakehouse:
        return Lakehouse(self.root)


def column_schema(table: str) -> TableSchema:
    """A lakehouse table's columns as Dagster shows them on the asset page."""
    return TableSchema(columns=[TableColumn(name, str(dtype).lower()) for name, dtype in TABLES[table].schema.items()])


@functools.cache
def table_metadata(table: str) -> dict:
    """Definition metadata of an asset stored in a lakehouse table: its columns and table name.
    On the spec, not on each materialisation: the schema is a property of the definition, and
    carried by every partition's event it was about a third of each event's serialised bytes."""
    return {"dagster/column_schema": column_schema(table), "lakehouse_table": table}


def partitions_of(periods: Periods) -> TimeWindowPartitionsDefinition:
    """Dagster's partitions of a calendar: one time window per period, keyed like `Periods.key`."""
    cal = periods.calendar
    first = period_start(periods.all_dates[0] if periods.all_dates else cal.start, periods.period)
    fmt = PERIOD_FORMAT[periods.period]
    start = dt.datetime.combine(first, dt.time())
    if cal.end is None:  # open-ended: include the current, unfinished period
        return TimeWindowPartitionsDefinition(
            cron_schedule=PERIOD_CRON[periods.period], start=start, fmt=fmt, end_offset=1
        )
    end = dt.datetime.combine(next_period_start(periods.all_dates[-1], periods.period), dt.time())
    return TimeWindowPartitionsDefinition(cron_schedule=PERIOD_CRON[periods.period], start=start, end=end, fmt=fmt)


OWNER = "team:quant-research"


class UpstreamMissingError(RuntimeError):
    """An input partition the computation needs has not been materialised."""


@dataclass(frozen=True)
class GraphContext:
    """What every factory needs: the manifest, its partition scheme, Dagster's partitions definition
    and the freshness policy (chosen in `definitions.py`, where the graph's policies are set)."""

    manifest: Manifest
    periods: Periods
    partitions: TimeWindowPartitionsDefinition
    freshness: FreshnessPolicy | None = None

    @classmethod
    def of(cls, manifest: Manifest, freshness: FreshnessPolicy | None = None) -> GraphContext:
        periods = Periods(manifest.calendar)
        return cls(manifest, periods, partitions_of(periods), freshness)

    @functools.cached_property
    def salt(self) -> str:
        """What every input fingerprint of the graph starts from (`reuse.salt`)."""
        return reuse.salt(self.manifest)

    @property
    def spec_defaults(self) -> dict:
        """What every materialisable asset spec carries: partitions, owner, freshness policy. (Set
        on the spec directly: re-mapping 1,850 specs afterwards cost 0.3 s of definition loading.)"""
        return dict(partitions_def=self.partitions, owners=[OWNER], freshness_policy=self.freshness)

    def step(self, name: str, specs: list[AssetSpec], checks: list[AssetCheckSpec] | None = None):
        """The decorator of every step of several keys: a multi-asset over the graph's periods,
        subsettable to any of its keys (the UI's "materialise selected"), a backfill of any range
        in one run (each step once, over all the range's dates in order)."""
        return multi_asset(
            name=name,
            specs=specs,
            check_specs=checks,
            can_subset=True,
            partitions_def=self.partitions,
            backfill_policy=SINGLE_RUN,
        )


# ---- partition dependencies ------------------------------------------------------------
# SAME_PERIOD_DEPS: a dependency on another asset is declared same-period even when the body reads
# a trailing window of it that reaches into earlier periods (the 500-session price window, the meta
# window, the previous dates' weights): the body reads the lakehouse itself and says which window.
# Declaring windows as TimeWindowPartitionMappings draws them in lineage, but Dagster's UI backfill
# derives each asset's target partitions from its parents' through those mappings and widened a
# backfill of March to the next April. Only an asset's dependency on *itself* (wealth carried from
# the previous period) is declared with an offset: it never widens a backfill.
PREVIOUS_PARTITION = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


# ---- a run of a step ---------------------------------------------------------------------


def add_partitions_metadata(
    context: AssetExecutionContext, asset: str, by_partition: dict[str, dict], run_keys: Iterable[str]
) -> None:
    """`context.add_asset_metadata(md, asset_key=asset, partition_key=key)` for each partition of a
    range run, in one update of the step's metadata.

    Dagster's call checks the key against the run's range by listing the range's partition keys
    again (a cron walk: about 0.5 ms) and copies the step's whole accumulated metadata each time, so
    the full history's 4,200 calls cost about 2 s of the steps' process. Our keys are the run's own
    (`run_keys`: `Run.keys`, taken from the same range), so the check is a set lookup and the
    metadata is merged once, into the same per-(asset, partition) entries Dagster's call fills. Where the
    step context is not the one this was written against (another Dagster version), the public
    call is used, one per partition."""
    try:
        private = importlib.import_module("dagster._core.execution.context.metadata_logging")
    except ImportError:  # pragma: no cover - Dagster moved its private module
        private = None
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    accumulated = getattr(step, "_metadata_accumulator", None)
    key = AssetKey.from_coercible(asset)
    if (
        private is None
        or not isinstance(accumulated, private.OutputMetadataAccumulator)
        or step is None
        or key not in step.assets_def.keys
    ):
        for partition, md in by_partition.items():
            context.add_asset_metadata(md, asset_key=asset, partition_key=partition)
        return
    targeted = set(run_keys)
    merged = dict(accumulated.per_output_metadata)
    for partition, md in by_partition.items():
        if partition not in targeted:
            raise ValueError(f"{asset}: partition {partition!r} is not in this run's range {sorted(targeted)}")
        handle = private.AssetMetadataHandle(asset_key=key, partition_key=partition)
        merged[handle] = {**merged.get(handle, {}), **md}
    step._metadata_accumulator = private.OutputMetadataAccumulator(per_output_metadata=merged)


@dataclass
class Run:
    """One execution of a step: its partitions, their rebalance dates and the lakehouse."""

    context: AssetExecutionContext
    graph: GraphContext
    lh: Lakehouse
    keys: list[str]  # the partitions of this run, ascending
    selected: set[str] = field(default_factory=set)
    start: dt.date | None = None  # resuming (`resume`): the first date computed; earlier rows kept as stored
    recording: bool = False  # writes record their dates' input fingerprints (`resume`)
    _inputs: list[str] | None = None  # the assets fingerprinted, when not the step's upstream (`resume`)
    _upstream_fp: dict[str, dict[dt.date, str] | None] = field(default_factory=dict)
    _own_fp: dict[tuple[str, str], dict[dt.date, str] | None] = field(default_factory=dict)
    _results: dict[str, tuple[dict, list]] = field(default_factory=dict)
    _yielded: set[str] = field(default_factory=set)

    @property
    def ledger(self) -> AuditLedger:
        return AuditLedger.in_lakehouse(self.lh.root)

    @classmethod
    def of(cls, context: AssetExecutionContext, graph: GraphContext, lh: Lakehouse) -> Run:
        """The run of a step, once no earlier run still materialises history it writes or reads."""
        keys = sorted(context.partition_keys)
        run = cls(context, graph, lh, keys, {k.to_user_string() for k in context.selected_asset_keys})
        refuse_overlapping_runs(
            context.instance, context.run.run_id, (run.first_read(keys[0]), keys[0], keys[-1]), run.first_read
        )
        return run

    def first_read(self, key: str) -> str:
        """The first period a run writing from `key` reads (its trailing windows reach back)."""
        periods, lookbacks = self.periods, self.graph.manifest.lookbacks
        if key not in periods.keys:
            return key
        reach = calendar_days_covering(max(lookbacks.prices_days, lookbacks.meta_window_days) + 1)
        return max(periods.key(periods.dates(key)[0] - dt.timedelta(days=reach)), periods.keys[0])

    def resume(self, inputs: list[str] | None = None, keys: list[str] | None = None) -> None:
        """Keep the stored rows of the dates whose inputs did not change; compute the rest.

        A run of one partition that already holds rows (the weekly update appends a date to the
        current period) computes from the first date whose inputs' fingerprint differs from the one
        the stored rows record (`reuse.py`; at least the partition's last date): `dates` starts
        there, `write` keeps the stored rows before it. A run of several partitions computes every
        date. Either way, the files of the run's last partition record its dates' fingerprints (the
        period the next update appends to). Called by the steps whose rows are functions of their
        date's inputs and of what the stored rows before it carry over (funnels, sleeves, metas).

        `inputs` and `keys` narrow it to some of a step's keys, computed from other keys of the step
        written before (a universe's features and regime, from its prices, returns with health
        verdicts and candidates): then only the writes after the call keep stored rows."""
        self.recording = True
        self._inputs = inputs
        if len(self.keys) != 1:
            return
        key = self.keys[0]
        dates = self.periods.dates(key)
        starts = []
        # every key of the step, not only the selected ones: a subset may still rewrite a sibling
        # (a meta's report flattens), whose kept rows must then match too
        for asset in keys or self._step_keys:
            tables = self.lh.tables_of(asset)
            if not tables and asset in self.selected:  # never written
                return
            starts += [
                reuse.first_changed(self.lh.footer(table, asset, key), self._fingerprints(table, asset, key))
                for table in tables
            ]
        if dates and starts:
            start = min((s for s in starts if s is not None), default=dates[-1])
            if start > dates[0]:
                self.start = start

    @functools.cached_property
    def _step_keys(self) -> list[str]:
        """Every key of the step, selected or not (a subset run's `assets_def.keys` holds only the
        selected ones; its `asset_deps` every key's)."""
        return sorted(k.to_user_string() for k in self.context.assets_def.asset_deps)

    def _fingerprints(self, table: str, asset: str, key: str) -> dict[dt.date, str] | None:
        """The input fingerprint of every date of `key` for `asset`'s rows in `table` (`reuse.py`)."""
        if key not in self._upstream_fp:
            deps = self.context.assets_def.asset_deps.values()
            upstream = self._inputs or {d.to_user_string() for keys in deps for d in keys} - set(self._step_keys)
            self._upstream_fp[key] = reuse.upstream_fingerprints(
                self.lh, self.periods, key, self.first_read(key), sorted(upstream), self.graph.salt
            )
        upstream_fp = self._upstream_fp[key]
        if upstream_fp is None:
            return None
        # kept for a one-partition run only: a longer one rewrites the earlier partitions it covers
        if (table, asset) not in self._own_fp or len(self.keys) > 1:
            self._own_fp[(table, asset)] = reuse.own_fingerprints(
                self.lh, self.periods, key, self.first_read(key), table, asset, upstream_fp
            )
        return self._own_fp[(table, asset)]

    @property
    def periods(self) -> Periods:
        return self.graph.periods

    @property
    def dates(self) -> list[dt.date]:
        """The rebalance dates the run computes, ascending: every date of its partitions, or when
        resuming (`resume`) the dates from `start` on."""
        dates = self.partition_dates
        return dates if self.start is None else [d for d in dates if d >= self.start]

    @property
    def partition_dates(self) -> list[dt.date]:
        """Every rebalance date of the run's partitions, ascending."""
        return [d for k in self.keys for d in self.periods.dates(k)]

    @property
    def reused(self) -> int:
        """How many rebalance dates' rows the run keeps as stored (`resume`)."""
        return len(self.partition_dates) - len(self.dates)

    @property
    def first_key(self) -> str:
        return self.keys[0]

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def is_selected(self, asset: str) -> bool:
        return asset in self.selected

    def key_of(self, d: dt.date) -> str:
        """The partition a row dated `d` belongs to (warm-up rows before the calendar: its first)."""
        return max(self.periods.key(d), self.periods.keys[0])

    # ---- reads ---------------------------------------------------------------------------

    def read(self, table: str, asset: str, keys: Iterable[str] | None = None, required: bool = True) -> pl.DataFrame:
        """Stored rows of `keys` (default: the run's). A missing partition is an error when `required`."""
        keys = list(self.keys if keys is None else keys)
        stored = set(self.lh.partitions(table, asset))
        missing = [k for k in keys if k not in stored]
        if missing and required:
            raise UpstreamMissingError(
                f"{asset}[{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}] is not materialised "
                f"(table {table}); materialise it first, e.g. select the asset with its upstream or backfill "
                f"those periods"
            )
        return self.lh.read(table, asset, [k for k in keys if k in stored])

    def earlier_keys(self, start: dt.date) -> list[str]:
        """Periods before the run's first one that hold dates >= `start` (what a trailing window reaches)."""
        first = self.periods.keys[0]
        key = max(self.periods.key(start), first)
        out = []
        while key is not None and key < self.first_key:
            out.append(key)
            key = self.periods.next(key)
        return out

    # ---- writes --------------------------------------------------------------------------

    def write(
        self,
        table: str,
        asset: str,
        frame: pl.DataFrame | pd.DataFrame,
        column: str = "rebalance_date",
        keep: bool = True,
        reusable: bool = True,
        **identity: str,
    ) -> dict[str, pl.DataFrame]:
        """Write the rows of every run partition (an empty file where a partition has none), atomically
        per file. Rows are assigned by their `column` date; identity columns are added in front.

        Resuming (`resume`), the stored rows dated before `start` are kept and the frame's rows from
        `start` on follow them (`keep` False: the frame replaces the partition, for a table of one row
        per partition such as a report). In a step that resumes, the files of the run's last
        partition record its dates' input fingerprints unless `reusable` is False (its checks
        failed: the next run recomputes every date)."""
        if isinstance(frame, pd.DataFrame):
            frame = pl.from_pandas(frame, include_index=False) if len(frame.columns) else pl.DataFrame()
        if frame.height:
            frame = frame.with_columns(*[pl.lit(v, dtype=pl.Utf8).alias(k) for k, v in identity.items()])
            frame = self.lh.conform(table, frame)
        if self.start is not None and keep:
            frame = self._after_stored(table, asset, frame)
        if frame.height:
            dated = frame[column]
            if dated.null_count():
                raise RuntimeError(f"{asset}: {dated.null_count()} of {frame.height} rows have no {column}")
            lo, hi = dated.min(), dated.max()
            assert isinstance(lo, dt.date) and isinstance(hi, dt.date)  # a Date column (conform)
            first = self.key_of(lo)
            if first == self.key_of(hi) and first in self.keys:
                # every row in one run partition (a partition's key only grows with the date): the
                # weekly update's every write, and a ranged run's short tables; no split needed
                parts = {first: frame}
            else:
                dates = dated.unique().to_list()
                mapping = {d: self.key_of(d) for d in dates}
                outside = sorted({k for k in mapping.values() if k not in self.keys})
                if outside:
                    raise RuntimeError(f"{asset}: rows dated in partitions {outside} outside the run's {self.keys}")
                frame = frame.with_columns(pl.col(column).replace_strict(mapping, return_dtype=pl.Utf8).alias("__key"))
                # one split, each part keeping the frame's row order (cheaper than iterating a group_by)
                split = frame.partition_by("__key", as_dict=True, include_key=False, maintain_order=True)
                parts = {k[0]: g for k, g in split.items()}
        else:
            parts = {}
        out = {}
        for key in self.keys:  # ascending: the last partition's fingerprint sees the one before it as written
            part = parts.get(key, pl.DataFrame(schema=TABLES[table].schema))
            # only the run's last partition records fingerprints: the weekly update appends to the
            # newest period; an earlier one re-materialised alone computes every date once
            recorded = self.recording and reusable and key == self.keys[-1]
            inputs = self._fingerprints(table, asset, key) if recorded else None
            self.lh.write_partition(table, asset, key, part, inputs=inputs)
            out[key] = part
        return out

    def _after_stored(self, table: str, asset: str, frame: pl.DataFrame) -> pl.DataFrame:
        """The stored rows of the run's partition dated before `start`, then the frame's from `start` on."""
        assert self.start is not None and len(self.keys) == 1  # `resume` resumes one partition
        if "rebalance_date" not in TABLES[table].schema:
            raise RuntimeError(f"{asset}: table {table} has no rebalance_date; a resumed run cannot keep its rows")
        stored = self.lh.read_partition(table, asset, self.keys[0])
        if stored is None:
            raise RuntimeError(
                f"{asset}[{self.keys[0]}] (table {table}) vanished while the run resumed at {self.start}: "
                f"re-materialise the partition"
            )
        kept = stored.filter(pl.col("rebalance_date") < self.start)
        if not frame.height:
            return kept
        return pl.concat([kept, frame.filter(pl.col("rebalance_date") >= self.start)], how="vertical_relaxed")

    def publish(
        self,
        table: str,
        asset: str,
        frame: pl.DataFrame | pd.DataFrame,
        *,
        identity: dict[str, str],
        column: str = "rebalance_date",
        per_partition: Callable[[str, pl.DataFrame], dict] | None = None,
        checks: Iterable[AssetCheckResult] = (),
        metadata: dict[str, Any] | None = None,
        keep: bool = True,
    ) -> dict[str, pl.DataFrame]:
        """The end of every step's output: `write` the rows (`keep`: see `write`; failed checks
        make the rows not reusable), `describe` each partition (its own facts from
        `per_partition(key, part)`) and the step (`metadata`), record the `checks`; returns the
        written parts."""
        checks = list(checks)
        reusable = all(result.passed for result in checks)
        parts = self.write(table, asset, frame, column=column, keep=keep, reusable=reusable, **identity)
        per_key = {k: per_partition(k, p) for k, p in parts.items()} if per_partition else None
        self.describe(asset, table, parts, column=column, per_partition=per_key, **(metadata or {}))
        for result in checks:
            self.check(asset, result)
        return parts

    # ---- results -------------------------------------------------------------------------

    def describe(
        self,
        asset: str,
        table: str,
        parts: dict[str, pl.DataFrame],
        column: str = "rebalance_date",
        per_partition: dict[str, dict] | None = None,
        **common,
    ) -> None:
        """Metadata of every partition (rows, dates, location, its own facts) and of the step.

        A run of one partition (the weekly update) hands its partition's metadata to Dagster with
        the step's, on the MaterializeResult: Dagster records the same materialisation, without the
        per-call validation of `add_asset_metadata` against the run's partition range."""
        single: dict = {}
        by_partition: dict[str, dict] = {}
        for key, part in parts.items():
            md = {
                "dagster/row_count": part.height,
                "dagster/uri": MetadataValue.path(str(self.lh.path(table, asset, key))),
            }
            if part.height and column in part.columns:
                dates = part[column]
                md.update(
                    {
                        "first_date": str(dates.min()),
                        "last_date": str(dates.max()),
                        f"{'rebalance_dates' if column == 'rebalance_date' else 'days'}": dates.n_unique(),
                    }
                )
            md.update((per_partition or {}).get(key, {}))
            if len(self.keys) == 1:
                single = md
            else:
                by_partition[key] = md
        if by_partition:
            add_partitions_metadata(self.context, asset, by_partition, self.keys)
        self._results[asset] = (
            {
                "partitions_in_run": len(self.keys),
                # resumed: the counts the step keeps in its own books (fallbacks, winners) cover these
                **({"dates_kept_as_stored": self.reused, "dates_computed": len(self.dates)} if self.start else {}),
                **common,
                **single,
            },
            self._results.get(asset, ({}, []))[1],
        )

    def check(self, asset: str, result: AssetCheckResult) -> None:
        md, checks = self._results.get(asset, ({}, []))
        self._results[asset] = (md, [*checks, result])

    def results(self, keys: Iterable[str] | None = None):
        """One MaterializeResult per selected key (metadata common to the run + its checks), in the
        order the step described them: its computation order, which is topological. `keys`: only
        these (a step that finishes some keys early hands them to Dagster while it computes the
        rest); a key is yielded once, so a final `results()` yields what is left."""
        order = [*[a for a in self._results if a in self.selected], *sorted(self.selected - set(self._results))]
        wanted = set(order if keys is None else keys)
        for asset in order:
            if asset not in wanted or asset in self._yielded:
                continue
            self._yielded.add(asset)
            md, checks = self._results.get(asset, ({}, []))
            yield MaterializeResult(asset_key=AssetKey(asset), metadata=md, check_results=checks)


class Rows:
    """A table's rows as a per-date loop computes them: columns extended together. `add` takes each
    column as a list (one value per row, every list the same length) or a scalar, repeated on every
    row of the call."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {}

    def add(self, **values: Any) -> None:
        # called once per date and lens (~270,000 times in a full-history run): one pass, no sets
        n = -1
        for v in values.values():
            if isinstance(v, list):
                if n < 0:
                    n = len(v)
                elif len(v) != n:
                    raise ValueError(
                        "columns of different lengths: "
                        f"{ {k: len(v) for k, v in values.items() if isinstance(v, list)} }"
                    )
        if n < 0:  # scalars only: one row
            n = 1
        columns = self.columns
        for k, v in values.items():
            column = columns.get(k)
            if column is None:
                column = columns[k] = []
            if isinstance(v, list):
                column.extend(v)
            else:
                column.extend([v] * n)

    def __bool__(self) -> bool:
        return bool(self.columns)

    def frame(self, **schema_overrides: Any) -> pl.DataFrame:
        """The rows (an empty frame, which writes empty partitions, when there are none)."""
        return pl.DataFrame(self.columns, schema_overrides=schema_overrides) if self.columns else pl.DataFrame()


def date_runs(frame: pl.DataFrame, column: str = "rebalance_date") -> tuple[pl.DataFrame, list[tuple[Any, int, int]]]:
    """Each date's rows as (date, start, stop) of `frame`, in order of first appearance: what a
    loop over `partition_by(column, maintain_order=True)` visits, without a frame per date (1,617
    small frames cost a second of polars calls per step; slicing columns taken out once is free).
    Stored partitions hold each date's rows together; a frame that does not is regrouped first
    (the returned frame is the one the runs index)."""
    if frame.height == 0:
        return frame, []
    run_ids = frame[column].rle_id().to_numpy()  # nulls compare equal here, as partition_by groups them
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    if len(starts) != frame[column].n_unique():  # a date's rows are split: group them, order kept
        frame = pl.concat(frame.partition_by(column, maintain_order=True))
        return date_runs(frame, column)
    stops = np.r_[starts[1:], frame.height]
    return frame, list(zip(frame[column].gather(starts).to_list(), starts.tolist(), stops.tolist()))


def check_result(name: str, asset: str, failures: dict[str, str], checked: int, **metadata) -> AssetCheckResult:
    """A check over every rebalance date of the run: fails if any date fails, naming the dates and why."""
    shown = dict(list(failures.items())[:20])
    return AssetCheckResult(
        check_name=name,
        asset_key=AssetKey(asset),
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "dates_checked": checked,
            "dates_failed": len(failures),
            "failures": MetadataValue.json(shown),
            **metadata,
        },
    )


def audit_complete(asset: str, ledger_check, records: int, checked: int, **metadata) -> AssetCheckResult:
    """The `audit_complete` check of an optimising step: the ledger's chain and completeness as
    `LedgerBatch.commit` verified them after appending the step's records."""
    failures = {} if ledger_check.ok else {"ledger": ledger_check.reason}
    return check_result("audit_complete", asset, failures, checked, ledger_records=records, **metadata)


def preview(frame: pl.DataFrame, rows: int = 10) -> MetadataValue:
    """The first rows of a partition's last rebalance date, as markdown (what a person checks first)."""
    if frame.height and "rebalance_date" in frame.columns:
        frame = frame.filter(pl.col("rebalance_date") == frame["rebalance_date"].max())
    shown = frame.drop([c for c in ("rebalance_date",) if c in frame.columns]).head(rows)
    if shown.height == 0:
        return MetadataValue.md("_(no rows)_")

    def fmt(v) -> str:
        return format(v, ".4f") if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in shown.iter_rows()]
    return MetadataValue.md("\n".join(lines))


def performance_metadata(days: np.ndarray, returns: np.ndarray, turnover: np.ndarray | None = None) -> dict:
    """Headline metrics of a stitched daily net return series (days ascending and unique)."""
    from quant_assets.simulation.metrics import annualisation_of_days, headline

    r = np.asarray(returns, dtype=float)
    finite = np.isfinite(r)
    if not finite.any():
        return {"oos_days": 0}
    perf = headline(r[finite], annualisation_of_days(np.asarray(days)[finite]))
    if turnover is not None and len(turnover):
        perf["turnover"] = float(np.mean(turnover))
    keys = ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar", "cvar95", "turnover")
    return {
        "oos_days": int(perf["days"]),
        **{f"oos_{k}": round(float(perf[k]), 6) for k in keys if k in perf and np.isfinite(perf[k])},
    }


def instance_lookup(instance) -> Callable[[str, str], tuple[str, str | None, str] | None]:
    """`explain`'s view of a Dagster instance: the latest materialisation of an asset partition."""

    def latest(asset: str, partition: str) -> tuple[str, str | None, str] | None:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
        )
        if not result.records:
            return None
        entry = result.records[0].event_log_entry
        mat = entry.asset_materialization
        at = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return entry.run_id, (mat.tags or {}).get("dagster/data_version") if mat else None, at

    return latest
