"""Plumbing shared by every asset factory: asset names, partition dates of a run, metadata.

Every asset follows one pattern: read its inputs from the lakehouse once for the whole range of
the run, loop over the rebalance dates in order, write one Parquet partition per date, and
return metadata that summarises the range and details its last date. That is what lets a
backfill of N dates run as one run per asset (`BackfillPolicy.single_run()`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
)

from quant_assets.lakehouse import Lakehouse
from quant_assets.lakehouse import pivot_wide as wide  # noqa: F401 - the factories' name for it
from quant_assets.manifest import Manifest
from quant_assets.schemas import TABLES

SINGLE_RUN = BackfillPolicy.single_run()
OWNER = "team:quant-research"


class UpstreamMissingError(RuntimeError):
    """An input partition the computation needs has not been materialised."""


@dataclass(frozen=True)
class GraphContext:
    """What every factory needs: the manifest and the shared partitions definition."""

    manifest: Manifest
    partitions: TimeWindowPartitionsDefinition


# ---- partition dependencies ------------------------------------------------------------
# SAME_DATE_DEPS: a dependency on another asset is declared same-date even when the body reads a
# window of it (the meta window, the previous dates' weights): the body reads the lakehouse itself.
# Declaring the window as a TimeWindowPartitionMapping draws it in lineage, but Dagster's UI
# backfill derives each asset's target partitions from its parents' through those mappings, so a
# backfill of March for the meta group targeted meta_returns through April of the next year and
# ran meta weights before their returns. Only an asset's dependency on *itself* (wealth carried
# from the previous date) is declared with an offset: it never widens a backfill.
PREVIOUS_PARTITION = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


# ---- asset names: the domain vocabulary of the graph ------------------------------------

def candidates_name(universe: str) -> str: return f"candidates_{universe}"
def prices_name(universe: str) -> str: return f"prices_{universe}"
def returns_name(universe: str) -> str: return f"returns_{universe}"
def features_name(universe: str) -> str: return f"features_{universe}"
def regime_name(universe: str) -> str: return f"regime_{universe}"
def clusters_name(universe: str) -> str: return f"clusters_{universe}"
def cluster_sensitivity_name(universe: str) -> str: return f"cluster_sensitivity_{universe}"
def rankings_name(sleeve: str) -> str: return f"rankings_{sleeve}"
def vetoes_name(sleeve: str) -> str: return f"vetoes_{sleeve}"
def selection_name(sleeve: str) -> str: return f"selection_{sleeve}"
def sleeve_weights_name(sleeve: str, risk: str) -> str: return f"sleeve_weights_{sleeve}_{risk}"
def sleeve_returns_name(sleeve: str, risk: str) -> str: return f"sleeve_returns_{sleeve}_{risk}"
def meta_returns_name(meta: str, risk: str) -> str: return f"meta_returns_{meta}_{risk}"
def meta_weights_name(meta: str, risk: str) -> str: return f"meta_weights_{meta}_{risk}"
def meta_tree_name(meta: str, risk: str) -> str: return f"meta_cluster_tree_{meta}_{risk}"
def meta_portfolio_returns_name(meta: str, risk: str) -> str: return f"meta_portfolio_returns_{meta}_{risk}"
def flattened_name(meta: str, risk: str) -> str: return f"flattened_weights_{meta}_{risk}"
def report_name(meta: str, risk: str) -> str: return f"meta_report_{meta}_{risk}"
def tournament_name(sleeve: str) -> str: return f"tournament_{sleeve}"
def orders_name(meta: str, risk: str) -> str: return f"rebalance_orders_{meta}_{risk}"
def implemented_name(meta: str, risk: str) -> str: return f"implemented_weights_{meta}_{risk}"


# ---- runs -------------------------------------------------------------------------------

def run_dates(context: AssetExecutionContext) -> list[dt.date]:
    """The rebalance dates this run covers (one, or a range in a single-run backfill), ascending."""
    return sorted(dt.date.fromisoformat(k) for k in context.partition_keys)


def require(frame: pl.DataFrame | None, asset: str, date: dt.date) -> pl.DataFrame:
    if frame is None:
        raise UpstreamMissingError(
            f"upstream partition {asset}[{date.isoformat()}] is not materialised; "
            f"materialise it first (e.g. select the asset with its upstream)"
        )
    return frame


def with_keys(df: pd.DataFrame, date: dt.date, **keys: str) -> pd.DataFrame:
    """Prefix the partition and asset identity columns every lakehouse row carries."""
    out = df.copy()
    for i, (k, v) in enumerate({"rebalance_date": date, **keys}.items()):
        out.insert(i, k, v)
    return out


def markdown_table(df: pd.DataFrame, max_rows: int = 10, floatfmt: str = ".4f") -> str:
    if df.empty:
        return "_(no rows)_"
    df = df.head(max_rows)
    cols = list(df.columns)

    def fmt(v) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def table_metadata(lakehouse: Lakehouse, table: str, asset: str, dates: list[dt.date],
                   rows: int, last: pd.DataFrame | pl.DataFrame | None, **extra) -> dict:
    """Row count, schema, location and (single-date runs) a preview: what a person checks first.

    The same dict lands on every partition of a range run, so per-date detail belongs in the
    lakehouse; keys that describe one date say so (`..._last_date`).
    """
    if isinstance(last, pl.DataFrame):
        last = last.to_pandas()
    meta = {
        "dagster/row_count": rows,
        "dagster/column_schema": TABLES[table].dagster_schema(),
        "dagster/uri": MetadataValue.path(str(lakehouse.path(table, asset, dates[-1]))),
        "lakehouse_table": table,
        "dates_in_run": len(dates),
        "first_date": dates[0].isoformat(),
        "last_date": dates[-1].isoformat(),
    }
    if last is not None and len(dates) == 1:
        # Only for single-date runs: a range run stamps its metadata on every partition of the
        # range, and a preview of the last date would then mislabel all the others.
        shown = last.drop(columns=[c for c in ("rebalance_date",) if c in last.columns])
        meta["preview"] = MetadataValue.md(markdown_table(shown))
    meta.update(extra)
    return meta


def audit_check(lakehouse: Lakehouse, asset: str, dates: list[dt.date]) -> AssetCheckResult:
    """Every optimisation intent of this asset's partitions has an outcome, and the chain verifies."""
    ledger = lakehouse.ledger()
    chain = ledger.verify()
    dangling = ledger.dangling_intents(asset, {d.isoformat() for d in dates})
    failures = {r["partition"]: f"intent {r['hash'][:12]} (run {r['run_id'][:8]}) has no outcome" for r in dangling}
    if not chain.ok:
        failures["ledger"] = chain.reason
    return check_result("audit_complete", failures, len(dates), ledger_records=chain.records,
                        ledger=MetadataValue.path(str(ledger.path)))


def check_result(name: str, failures: dict[str, str], checked: int, **metadata) -> AssetCheckResult:
    """A check over every date of the run: fails if any date fails, naming the dates and why."""
    shown = dict(list(failures.items())[:20])
    return AssetCheckResult(
        check_name=name,
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        metadata={"dates_checked": checked, "dates_failed": len(failures),
                  "failures": MetadataValue.json(shown), **metadata},
    )


def performance_metadata(stitched: pd.DataFrame, value: str = "net_return") -> dict:
    """Headline metrics of the run's stitched daily series (dates de-duplicated, ascending)."""
    from quant_assets.metrics import performance

    if stitched is None or stitched.empty:
        return {"oos_days": 0}
    daily = stitched.drop_duplicates("date")
    daily = daily.set_index(pd.DatetimeIndex(daily["date"]))
    perf = performance(daily[value].astype(float).sort_index(),
                       turnover=daily.loc[daily["turnover"] > 0, "turnover"] if "turnover" in daily else None)
    keys = ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar", "cvar95", "turnover")
    return {"oos_days": int(perf["days"]),
            **{f"oos_{k}": round(float(perf[k]), 6) for k in keys if k in perf and pd.notna(perf[k])}}
