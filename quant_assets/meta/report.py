"""The markdown report of a meta lens as of a rebalance date: allocation with effective N and
health, allocation over time, children's correlations, trailing out-of-sample performance and
equity curve, fallback and veto events, top physical holdings, the cluster tree.

Rendered from the stored tables (data dated <= the report's date only); a step that renders many
dates reads each table once (`report_tables`) and passes it in.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import polars as pl

from quant_assets.data.calendars import calendar_days_covering
from quant_assets.naming import (
    flattened_name,
    meta_portfolio_returns_name,
    meta_returns_name,
    meta_tree_name,
    meta_weights_name,
)
from quant_assets.simulation.metrics import headline

if TYPE_CHECKING:
    pass


def markdown_table(df: pd.DataFrame | pl.DataFrame, max_rows: int = 10, floatfmt: str = ".4f") -> str:
    if len(df) == 0:
        return "_(no rows)_"
    df = df.head(max_rows)
    cols = list(df.columns)
    rows = df.iter_rows() if isinstance(df, pl.DataFrame) else df.itertuples(index=False)

    def fmt(v) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


REPORT_TABLES = ("meta_weights", "meta_cluster_tree", "flattened_weights", "meta_portfolio_returns", "meta_returns")


def report_tables(lh, meta: str, risk: str, keys: list[str]) -> dict[str, pl.DataFrame]:
    """The stored tables a meta lens's reports render from, each read once for the periods `keys`."""
    names = {
        "meta_weights": meta_weights_name(meta, risk),
        "meta_cluster_tree": meta_tree_name(meta, risk),
        "flattened_weights": flattened_name(meta, risk),
        "meta_portfolio_returns": meta_portfolio_returns_name(meta, risk),
        "meta_returns": meta_returns_name(meta, risk),
    }
    return {t: lh.read(t, names[t], keys) for t in REPORT_TABLES}


def report_window_keys(periods, d: dt.date, lookbacks) -> list[str]:
    """The periods a report as of `d` reads: the meta window before `d` and `d`'s own period."""
    span = dt.timedelta(days=calendar_days_covering(lookbacks.meta_window_days))
    first, last = periods.key(d - span), periods.key(d)
    return [k for k in periods.keys if first <= k <= last]


def report_at(
    lh, meta: str, risk: str, d: dt.date, periods, lookbacks, tables: dict[str, pl.DataFrame] | None = None
) -> str:
    """The report of a meta lens as of rebalance date `d`, from the stored tables (data <= d only).

    `tables` (from `report_tables`) lets a step render the reports of many dates from one read; rows
    outside `d`'s window are filtered out here, so the result is the same either way."""
    span = dt.timedelta(days=calendar_days_covering(lookbacks.meta_window_days))
    if tables is None:
        tables = report_tables(lh, meta, risk, report_window_keys(periods, d, lookbacks))
    in_window = (pl.col("rebalance_date") > d - span) & (pl.col("rebalance_date") <= d)
    on_date = pl.col("rebalance_date") == d
    history = tables["meta_weights"].filter(in_window)
    perf = tables["meta_portfolio_returns"].filter(in_window).sort("date", maintain_order=True)
    streams = tables["meta_returns"].filter(in_window)
    if streams.height:
        wide = (
            streams.pivot(on="child", index="date", values="ret")
            .drop_nulls()
            .sort("date")
            .tail(lookbacks.meta_window_days)
        )
        matrix = wide.select(sorted(c for c in wide.columns if c != "date"))
    else:
        matrix = pl.DataFrame()
    return render_report(
        meta,
        risk,
        d,
        history.filter(on_date),
        tables["meta_cluster_tree"].filter(on_date),
        tables["flattened_weights"].filter(on_date),
        perf,
        history,
        matrix,
    )


def render_tree(tree: pl.DataFrame) -> str:
    rows = tree.to_dicts()
    lines = [f"- **{r['node']}** (1.0000)" for r in sorted(rows, key=lambda r: r["level"]) if r["kind"] == "meta"]
    for r in rows:
        if r["kind"] != "cluster":
            continue
        lines.append(f"  - {r['node'].rsplit('/', 1)[-1]}: {r['weight']:.4f}")
        for c in rows:
            if c["parent"] == r["node"]:
                ref = f" -> `{c['ref']}`" if c["ref"] else ""
                lines.append(f"    - {c['node']}: {c['weight']:.4f} (intra {c['intra_weight']:.4f}){ref}")
    return "\n".join(lines)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values) -> str:
    """A row of block characters: the shape of a series where a chart cannot be embedded."""
    v = np.asarray(list(values), dtype=float)
    if len(v) == 0:
        return ""
    lo, hi = np.nanmin(v), np.nanmax(v)
    if hi - lo < 1e-12:
        return SPARKS[3] * len(v)
    return "".join(SPARKS[int(round((x - lo) / (hi - lo) * (len(SPARKS) - 1)))] for x in v)


def render_report(
    meta: str,
    risk: str,
    d: dt.date,
    weights: pl.DataFrame,
    tree: pl.DataFrame,
    flat: pl.DataFrame,
    returns: pl.DataFrame,
    history: pl.DataFrame,
    matrix: pl.DataFrame,
) -> str:
    """The report of one meta lens at one date (every section computed from data <= d)."""
    w = weights["weight"].to_numpy()
    eff_n = 1.0 / float((w**2).sum()) if len(w) else float("nan")
    ret = returns["ret"].to_numpy().astype(float) if returns.height else np.array([])
    perf = headline(ret[np.isfinite(ret)])
    pct = lambda v: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2%}"  # noqa: E731
    alloc = weights.select("child", "child_kind", "weight", "raw_weight", "success_share", "vetoed")
    by_date = history.sort("rebalance_date", maintain_order=True)
    n_dates = by_date["rebalance_date"].n_unique()
    time_lines = []
    for c in sorted(by_date["child"].unique().to_list()):
        v = by_date.filter(pl.col("child") == c)["weight"].to_numpy()
        time_lines.append(f"- `{c}` {sparkline(v)} {v[0]:.2f} -> {v[-1]:.2f} (min {v.min():.2f}, max {v.max():.2f})")
    events = (
        by_date.filter(~pl.col("status").str.starts_with("optimised") | (pl.col("vetoed") != ""))
        .group_by("rebalance_date", maintain_order=True)
        .agg(pl.col("status").first(), pl.col("vetoed").filter(pl.col("vetoed") != "").str.join("; "))
    )
    corr = pl.DataFrame()
    if matrix.width > 1 and matrix.height > 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.round(np.corrcoef(matrix.to_numpy(), rowvar=False), 2)
        corr = pl.DataFrame({"child": matrix.columns, **{c: rho[:, i] for i, c in enumerate(matrix.columns)}})
    wealth = np.cumprod(1.0 + ret) if len(ret) else np.array([])
    top = flat.head(10).select("symbol", "net_weight", "long_weight", "short_weight", "contributors")
    net = flat["net_weight"].to_numpy()
    return "\n".join(
        [
            f"# {meta} / {risk} as of {d.isoformat()}",
            "",
            f"**Allocation** ({weights['engine'][0]}/{weights['profile_used'][0]}, effective N {eff_n:.2f}): "
            f"{weights['status'][0]}",
            "",
            markdown_table(alloc),
            "",
            f"## Allocation over the last {n_dates} rebalances",
            "",
            *time_lines,
            "",
            f"## Trailing out-of-sample performance ({perf['days']} days, stitched)",
            "",
            (
                f"Total return {pct(perf['total_return'])}, CAGR {pct(perf['cagr'])}, vol {pct(perf['ann_vol'])}, "
                f"Sharpe {perf['sharpe']:.2f}, max drawdown {pct(perf['max_drawdown'])}.  \n"
                f"Equity curve {sparkline(wealth[:: max(1, len(wealth) // 60)])} ({wealth[-1]:.3f})"
            )
            if perf["days"] > 1
            else "Not enough out-of-sample history yet.",
            "",
            "## Children's correlations (meta window)",
            "",
            markdown_table(corr, floatfmt=".2f"),
            "",
            f"## Fallback and veto events ({events.height} of {n_dates} rebalances)",
            "",
            markdown_table(events.tail(8)) if events.height else "None: every allocation optimised.",
            "",
            "## Top physical holdings (signed net)",
            "",
            markdown_table(top),
            "",
            f"Gross {np.abs(net).sum():.4f}, net {net.sum():.4f}, {len(net)} symbols.",
            "",
            "## Cluster tree",
            "",
            render_tree(tree),
        ]
    )
