"""Explain a weight: where one physical symbol's weight in a meta comes from, and what produced it.

For (meta, risk lens, date, symbol): every root-to-atom path with the weight at each level, the
atom and its sign, the arithmetic checked (product along the path, sum of paths = net weight), and
for every input partition the Dagster materialisation that wrote it (run id, data version, time)
next to the audit ledger's outcome. The same facts the UI's lineage view shows, resolved for one
number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
import polars as pl

from quant_assets.audit.ledger import AuditLedger, frame_hash, weights_hash
from quant_assets.data.calendars import Periods
from quant_assets.naming import (
    flattened_name,
    meta_weights_name,
    prices_name,
    returns_name,
    selection_name,
    sleeve_weights_name,
)
from quant_assets.storage.lakehouse import Lakehouse

if TYPE_CHECKING:  # the manifest is passed in; audit sits below config
    from quant_assets.config.manifest import Manifest

# (asset, partition) -> (run id, data version, "YYYY-MM-DD HH:MM UTC") of its latest materialisation,
# or None. The Dagster layer answers it from the instance (`assets.common.instance_lookup`).
MaterializationLookup = Callable[[str, str], "tuple[str, str | None, str] | None"]


class ExplainError(LookupError):
    """Nothing to explain: the message names the meta, lens, date or symbol that was not found."""


@dataclass
class Level:
    parent: str
    child: str
    weight: float


@dataclass
class PathExplanation:
    path: str
    levels: list[Level]
    sleeve: str
    atom_id: str
    direction: str
    sleeve_weight: float
    contribution: float

    @property
    def product(self) -> float:
        out = self.sleeve_weight * (-1.0 if self.direction == "SHORT" else 1.0)
        for level in self.levels:
            out *= level.weight
        return out


@dataclass
class InputRecord:
    asset: str
    partition: str
    run_id: str | None = None
    data_version: str | None = None
    materialized_at: str | None = None
    ledger: str | None = None
    content_hash: str | None = None
    ledger_match: bool | None = None  # stored weights hash == the ledger's recorded output hash


@dataclass
class Explanation:
    meta: str
    risk: str
    date: dt.date
    symbol: str
    net_weight: float
    long_weight: float
    short_weight: float
    paths: list[PathExplanation]
    inputs: list[InputRecord] = field(default_factory=list)

    @property
    def path_gap(self) -> float:
        """Largest |product of weights along a path - stored contribution|."""
        return max((abs(p.product - p.contribution) for p in self.paths), default=0.0)

    @property
    def sum_gap(self) -> float:
        return abs(sum(p.contribution for p in self.paths) - self.net_weight)

    def render(self) -> str:
        lines = [
            f"{self.symbol} in {self.meta} / {self.risk} on {self.date}: net {self.net_weight:+.6f} "
            f"(long {self.long_weight:.6f}, short {self.short_weight:.6f}) from {len(self.paths)} path(s)"
        ]
        for p in sorted(self.paths, key=lambda p: -abs(p.contribution)):
            chain = " -> ".join([self.meta] + [f"{lv.child} ({lv.weight:.4f})" for lv in p.levels])
            sign = "-" if p.direction == "SHORT" else "+"
            lines.append(
                f"  {chain} -> atom {p.atom_id} (sleeve weight {p.sleeve_weight:.4f}, {p.direction}, "
                f"sign {sign}) = {p.contribution:+.6f}"
            )
        lines.append(
            f"  check: product along each path = contribution (max gap {self.path_gap:.1e}); "
            f"sum of paths = net weight (gap {self.sum_gap:.1e})"
        )
        if self.inputs:
            lines.append("inputs (asset[partition]: Dagster run, data version, materialised at | audit ledger):")
            for r in self.inputs:
                dagster = (
                    f"run {r.run_id[:8]}, data version {(r.data_version or '-')[:12]}, {r.materialized_at}"
                    if r.run_id
                    else "not materialised in this Dagster instance"
                )
                ledger = f" | {r.ledger}" if r.ledger else ""
                if r.ledger_match is not None:
                    ledger += " (stored weights match)" if r.ledger_match else " (STORED WEIGHTS DIFFER FROM LEDGER)"
                content = f", content {r.content_hash[:12]}" if r.content_hash else ""
                lines.append(f"  {r.asset}[{r.partition}]: {dagster}{content}{ledger}")
        return "\n".join(lines)


def _rows(lh: Lakehouse, table: str, asset: str, periods: Periods, date: dt.date) -> pd.DataFrame | None:
    """The stored rows of one rebalance date (None when its partition was never materialised)."""
    frame = lh.read_partition(table, asset, periods.key(date))
    if frame is None:
        return None
    if "rebalance_date" in frame.columns:
        frame = frame.filter(pl.col("rebalance_date") == date)
    return frame.to_pandas()


def _meta_weights(lh: Lakehouse, periods: Periods, meta: str, risk: str, date: dt.date) -> pd.Series:
    frame = _rows(lh, "meta_weights", meta_weights_name(meta, risk), periods, date)
    if frame is None or frame.empty:
        raise ExplainError(f"{meta_weights_name(meta, risk)} has no weights for {date} (partition {periods.key(date)})")
    return frame.set_index("child")["weight"]


def explain(
    lh: Lakehouse,
    manifest: Manifest,
    meta: str,
    risk: str,
    date: dt.date,
    symbol: str,
    materializations: MaterializationLookup | None = None,
) -> Explanation:
    if meta not in manifest.metas:
        raise ExplainError(f"unknown meta {meta!r}; metas: {sorted(manifest.metas)}")
    if risk not in manifest.meta_risks(meta):
        raise ExplainError(f"meta {meta!r} has no risk lens {risk!r}; lenses: {manifest.meta_risks(meta)}")
    periods = Periods(manifest.calendar)
    if date not in set(periods.all_dates):
        near = [d for d in periods.all_dates if d <= date][-1:] or periods.all_dates[:1]
        raise ExplainError(
            f"{date} is not a rebalance date of the calendar ({manifest.calendar.frequency}); "
            f"the nearest before it is {near[0] if near else 'none'}"
        )
    flat_asset = flattened_name(meta, risk)
    flat = _rows(lh, "flattened_weights", flat_asset, periods, date)
    if flat is None or flat.empty:
        stored = lh.partitions("flattened_weights", flat_asset)
        raise ExplainError(
            f"{flat_asset} has no weights for {date}: partition {periods.key(date)} is not "
            f"materialised (stored: {', '.join(stored[-3:]) or 'none yet'})"
        )
    flat = flat.set_index("symbol")
    if symbol not in flat.index:
        held = ", ".join(flat.index[:12])
        raise ExplainError(f"{symbol!r} is not held by {meta} / {risk} on {date}; held: {held}")
    rows = _rows(lh, "flattened_contributions", flat_asset, periods, date)
    if rows is None:
        raise ExplainError(
            f"{flat_asset} has no contributions for {date}: re-materialise partition {periods.key(date)}"
        )
    rows = rows[rows["symbol"] == symbol]
    weights_cache: dict[str, pd.Series] = {}
    paths = []
    for r in rows.itertuples():
        parts = r.path.split("/")
        levels = []
        for parent, child in zip(parts, parts[1:]):
            if parent not in weights_cache:
                weights_cache[parent] = _meta_weights(lh, periods, parent, risk, date)
            levels.append(Level(parent, child, float(weights_cache[parent][child])))
        paths.append(
            PathExplanation(
                r.path, levels, r.sleeve, r.atom_id, r.direction, float(r.sleeve_weight), float(r.contribution)
            )
        )
    out = Explanation(
        meta,
        risk,
        date,
        symbol,
        float(flat.loc[symbol, "net_weight"]),
        float(flat.loc[symbol, "long_weight"]),
        float(flat.loc[symbol, "short_weight"]),
        paths,
    )
    out.inputs = _inputs(lh, manifest, periods, out, materializations)
    return out


def _inputs(
    lh: Lakehouse, manifest: Manifest, periods: Periods, ex: Explanation, materializations: MaterializationLookup | None
) -> list[InputRecord]:
    """Every asset partition the weight depends on, upstream from the flattened weights."""
    inputs = [("flattened_weights", flattened_name(ex.meta, ex.risk))]
    for meta in dict.fromkeys(lv.parent for p in ex.paths for lv in p.levels):
        inputs.append(("meta_weights", meta_weights_name(meta, ex.risk)))
        if meta != ex.meta:
            inputs.append(("flattened_weights", flattened_name(meta, ex.risk)))
    for sleeve in dict.fromkeys(p.sleeve for p in ex.paths):
        universe = manifest.sleeves[sleeve].universe
        inputs += [
            ("sleeve_weights", sleeve_weights_name(sleeve, ex.risk)),
            ("selection", selection_name(sleeve)),
            ("returns_health", returns_name(universe)),
            ("prices", prices_name(universe)),
        ]
    partition = periods.key(ex.date)
    outcomes = _latest_outcomes(lh, {a for _, a in inputs}, partition, ex.date.isoformat())
    records = []
    for table, asset in dict.fromkeys(inputs):
        stored = _rows(lh, table, asset, periods, ex.date)
        rec = InputRecord(asset, f"{partition} ({ex.date})" if stored is not None and table != "prices" else partition)
        if stored is not None:
            rec.content_hash = frame_hash(stored)
        if asset in outcomes:
            outcome, entry = outcomes[asset]
            rec.ledger = f"{outcome['step']} {entry['status']}, output {str(entry['output_hash'])[:12]}"
            if stored is not None:
                rec.ledger_match = weights_hash(table, stored) == entry["output_hash"]
        found = materializations(asset, partition) if materializations is not None else None
        if found is not None:
            rec.run_id, rec.data_version, rec.materialized_at = found
        records.append(rec)
    return records


def _latest_outcomes(lh: Lakehouse, assets: set[str], partition: str, date: str) -> dict[str, tuple[dict, dict]]:
    """The latest outcome of each asset's partition, with its entry for the rebalance date."""
    out = {}
    for rec in AuditLedger.in_lakehouse(lh.root).records():
        if rec["type"] == "outcome" and rec["asset"] in assets and rec["partition"] == partition:
            for entry in rec.get("detail", {}).get("optimisations", []):
                if entry["rebalance_date"] == date:
                    out[rec["asset"]] = (rec, entry)
    return out
