"""Per-(meta, risk) assets: the recursive meta layer.

For a meta M and a risk lens r (the sleeve risk profile whose streams feed the tree):
  meta_returns_M_r            children's streams over the trailing window, inner-joined
  meta_weights_M_r            allocation across children (+ meta_cluster_tree_M_r, same step)
  meta_portfolio_returns_M_r  M's own out-of-sample stream: what a parent meta sees of M
  flattened_weights_M_r       physical symbols only, signed, every path recorded
  meta_report_M_r             markdown for people
A child meta contributes its meta_portfolio_returns / flattened contributions, never a plain
mean of its sleeves, so nesting to any depth is the same code path.
"""


import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
from dagster import (
    AssetCheckSpec,
    AssetKey,
    TableColumnDep,
    TableColumnLineage,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quant_assets.assets.common import (
    OWNER,
    SINGLE_RUN,
    GraphContext,
    audit_check,
    check_result,
    flattened_name,
    markdown_table,
    meta_portfolio_returns_name,
    meta_returns_name,
    meta_tree_name,
    meta_weights_name,
    prices_name,
    report_name,
    require,
    run_dates,
    sleeve_returns_name,
    sleeve_weights_name,
    table_metadata,
    wide,
    with_keys,
)
from quant_assets.calendar import calendar_days_covering, previous_dates
from quant_assets.audit import frame_hash, weights_hash
from quant_assets.checks import flattened_problem, meta_weights_problem, returns_problem, sign_problem
from quant_assets.lakehouse import Lakehouse, LakehouseResource
from quant_assets.manifest import ChildRef
from quant_assets.meta import (
    aggregate,
    allocate,
    child_clusters,
    cluster_tree,
    flatten,
    health_vetoes,
    net_by_symbol,
    sleeve_contributions,
    success_share,
)
from quant_assets.metrics import performance
from quant_assets.optimise import FALLBACK_CHAINS
from quant_assets.simulate import drift

TREE_THRESHOLD = 0.5
LOST_DAYS_WARNING = 0.20


def child_stream_asset(child: ChildRef, risk: str) -> tuple[str, str, str]:
    """(table, asset, value column) of the stream a child contributes to its parent."""
    if child.kind == "sleeve":
        return "sleeve_returns", sleeve_returns_name(child.name, risk), "net_return"
    return "meta_portfolio_returns", meta_portfolio_returns_name(child.name, risk), "ret"


def read_stream(lh: Lakehouse, child: ChildRef, risk: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Rows (rebalance_date, date, ret) of a child's stream for partitions start..end."""
    table, name, col = child_stream_asset(child, risk)
    frame = lh.read(table, name, start, end).to_pandas()
    frame["rebalance_date"] = pd.to_datetime(frame["rebalance_date"]).dt.date
    return frame[["rebalance_date", "date", col]].rename(columns={col: "ret"})


def optimisation_history(lh: Lakehouse, child: ChildRef, risk: str, start: dt.date,
                         end: dt.date) -> list[tuple[dt.date, bool]]:
    """(date, succeeded) for a child's optimisations: a sleeve succeeded when its requested profile
    produced the weights; a meta when its allocation did not fall back. Cash sleeves and metas
    waiting for history are not judged."""
    if child.kind == "sleeve":
        frame = lh.read("sleeve_weights", sleeve_weights_name(child.name, risk), start, end)
        if frame.height == 0:
            return []
        per_date = frame.group_by("rebalance_date").agg(pl.col("profile_used").first()).to_pandas()
        return [(pd.Timestamp(r.rebalance_date).date(), r.profile_used == risk) for r in per_date.itertuples()]
    frame = lh.read("meta_weights", meta_weights_name(child.name, risk), start, end)
    if frame.height == 0:
        return []
    per_date = frame.group_by("rebalance_date").agg(pl.col("status").first()).to_pandas()
    return [(pd.Timestamp(r.rebalance_date).date(), r.status.startswith("optimised")) for r in per_date.itertuples()
            if r.status.startswith(("optimised", "fallback"))]


def _in_window(frame: pd.DataFrame, d: dt.date, span: dt.timedelta) -> pd.DataFrame:
    """Rows of partitions in (d - span, d]."""
    return frame[(frame["rebalance_date"] > d - span) & (frame["rebalance_date"] <= d)]


def _series(rows: pd.DataFrame, lo: dt.date | None, hi: dt.date) -> pd.Series:
    sel = rows[(rows["rebalance_date"] <= hi) & ((rows["rebalance_date"] > lo) if lo else True)]
    return pd.Series(sel["ret"].to_numpy(float), index=pd.DatetimeIndex(sel["date"])).sort_index()


def meta_assets(ctx: GraphContext, meta: str, risk: str) -> list:
    m = ctx.manifest
    cfg = m.metas[meta]
    lb = m.lookbacks
    children = cfg.children
    names = [c.name for c in children]
    window_days = calendar_days_covering(lb.meta_window_days)
    n_mr, n_mw, n_tree = meta_returns_name(meta, risk), meta_weights_name(meta, risk), meta_tree_name(meta, risk)
    n_mpr, n_flat, n_rep = meta_portfolio_returns_name(meta, risk), flattened_name(meta, risk), report_name(meta, risk)
    stream_assets = [child_stream_asset(c, risk)[1] for c in children]
    universes = sorted({m.sleeves[s].universe for s in m.descendant_sleeves(meta)})
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER])
    chain = FALLBACK_CHAINS[cfg.allocation.profile]

    @asset(name=n_mr, group_name="meta", kinds={"pandas", "parquet"},
           deps=stream_assets,  # reads the trailing meta window of each stream (see SAME_DATE_DEPS)
           description=f"Daily return streams of `{meta}`'s children ({', '.join(map(str, children))}) under the "
                       f"`{risk}` lens over the trailing {lb.meta_window_days} sessions, inner-joined on dates.",
           **common)
    def meta_returns(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        span = dt.timedelta(days=window_days)
        rows_by_child = {c.name: read_stream(lh, c, risk, dates[0] - span, dates[-1]) for c in children}
        rows, last, lost, warnings_ = 0, None, {}, {}
        for d in dates:
            streams = {c: _series(r, d - span, d) for c, r in rows_by_child.items()}
            # A child with no stream at all in the window (a sleeve whose universe is not listed yet)
            # would empty the inner join for everyone: leave it out; the health gate vetoes it.
            present = {c: st for c, st in streams.items() if len(st)}
            matrix, info = aggregate(present or streams, join="inner")
            matrix = matrix.tail(lb.meta_window_days)
            lost[d.isoformat()] = round(info["lost_share"], 4)
            if info["lost_share"] > LOST_DAYS_WARNING:
                warnings_[d.isoformat()] = f"inner join lost {info['lost_share']:.0%} of days"
            long = matrix.rename_axis("date").reset_index().melt(id_vars="date", var_name="child", value_name="ret")
            long["date"] = pd.to_datetime(long["date"]).dt.tz_localize(None).dt.date
            last = with_keys(long, d, meta=meta, risk=risk)
            lh.write_partition("meta_returns", n_mr, d, last)
            rows += len(last)
        if warnings_:
            context.log.warning(f"{n_mr}: inner join dropped > {LOST_DAYS_WARNING:.0%} of days on {len(warnings_)} dates")
        return MaterializeResult(metadata=table_metadata(
            lh, "meta_returns", n_mr, dates, rows, None,
            days_in_window_last_date=int(last["date"].nunique()) if last is not None and len(last) else 0,
            join_lost_share_last_date=lost[dates[-1].isoformat()],
            join_warnings=MetadataValue.json(warnings_)))

    child_weight_windows = [sleeve_weights_name(c.name, risk) if c.kind == "sleeve" else meta_weights_name(c.name, risk)
                            for c in children]  # read over the trailing window (health gate)

    @asset(name=n_mw, group_name="meta", kinds={cfg.allocation.engine, "parquet"},
           deps=[n_mr, *child_weight_windows],
           check_specs=[AssetCheckSpec("weights_within_bounds", asset=n_mw, blocking=True,
                                       description=f"Finite, summing to 1, within [{cfg.min_weight}, "
                                                   f"{cfg.max_weight}], vetoed children at 0"),
                        AssetCheckSpec("audit_complete", asset=n_mw, blocking=True,
                                       description="Every optimisation intent has an outcome; ledger chain intact")],
           description=f"Allocation of `{meta}` across its children under `{risk}`: "
                       f"{cfg.allocation.engine}/{cfg.allocation.profile}, fallback chain "
                       f"{' -> '.join(chain)}, projected to [{cfg.min_weight}, {cfg.max_weight}]. "
                       f"Children below {cfg.min_child_success_share:.0%} successful optimisations over "
                       f"the window, or with a flat stream, are vetoed for the date. Equal weight until "
                       f"{lb.meta_min_history_days} sessions of history exist.", **common)
    def meta_weights(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        ledger = lh.ledger()
        span = dt.timedelta(days=window_days)
        histories = {c.name: optimisation_history(lh, c, risk, dates[0] - span, dates[-1]) for c in children}
        rows, last_w, failures, statuses, vetoes = 0, None, {}, {}, 0
        for d in dates:
            mr = require(lh.read_partition("meta_returns", n_mr, d), n_mr, d)
            matrix = wide(mr, "ret", columns="child").reindex(columns=names)
            shares = {c: success_share([ok for day, ok in h if d - span < day <= d]) for c, h in histories.items()}
            vetoed = health_vetoes(matrix, shares, cfg.min_child_success_share)
            intent = ledger.intent(step="meta_optimise", asset=n_mw, partition=d.isoformat(), run_id=context.run.run_id,
                                   params={"engine": cfg.allocation.engine, "profile": cfg.allocation.profile,
                                           "chain": list(chain), "bounds": [cfg.min_weight, cfg.max_weight],
                                           "vetoed": vetoed},
                                   input_hashes={"meta_returns": frame_hash(matrix)})
            try:
                alloc = allocate(matrix, profile=cfg.allocation.profile, engine=cfg.allocation.engine, chain=chain,
                                 lower=cfg.min_weight, upper=cfg.max_weight, min_history=lb.meta_min_history_days,
                                 vetoed=vetoed)
            except Exception as err:
                ledger.outcome(intent, status="error", output_hash=None, detail={"error": repr(err)[:300]})
                raise
            w = alloc.weights
            kind = alloc.status.split(":")[0].split(";")[0].strip()  # optimised | fallback | equal_weight
            ledger.outcome(intent, status={"optimised": "success"}.get(kind, kind),
                           output_hash=weights_hash("meta_weights", pd.DataFrame({"child": names, "weight": w.to_numpy()})),
                           detail={"status": alloc.status, "engine": alloc.engine, "profile_used": alloc.profile_used})
            clusters = child_clusters(w, matrix, TREE_THRESHOLD)
            frame = pd.DataFrame({"child": names, "child_kind": [c.kind for c in children], "weight": w.to_numpy(),
                                  "raw_weight": alloc.raw.to_numpy(), "cluster": clusters.reindex(names).to_numpy(),
                                  "engine": alloc.engine, "profile_used": alloc.profile_used, "status": alloc.status,
                                  "vetoed": [vetoed.get(c, "") for c in names],
                                  "success_share": [shares[c] for c in names]})
            last_w = with_keys(frame, d, meta=meta, risk=risk)
            lh.write_partition("meta_weights", n_mw, d, last_w)
            rows += len(frame)
            statuses[d.isoformat()] = alloc.status
            vetoes += len(vetoed)
            problem = meta_weights_problem(w, cfg.min_weight, cfg.max_weight, set(vetoed))
            if problem:
                failures[d.isoformat()] = problem
        equal = sum(s.startswith("equal_weight") for s in statuses.values())
        fb = sum(s.startswith("fallback") for s in statuses.values())
        return MaterializeResult(metadata=table_metadata(
            lh, "meta_weights", n_mw, dates, rows, last_w, status_last_date=statuses[dates[-1].isoformat()],
            dates_equal_weight=equal, dates_with_fallback=fb, child_vetoes_in_run=vetoes,
            allocation=f"{cfg.allocation.engine}/{cfg.allocation.profile}"),
            check_results=[check_result("weights_within_bounds", failures, len(dates),
                                        bounds=f"[{cfg.min_weight}, {cfg.max_weight}]"),
                           audit_check(lh, n_mw, dates)])

    @asset(name=n_tree, group_name="meta", kinds={"scipy", "parquet"},
           deps=[n_mw, n_mr] + [meta_tree_name(c.name, risk) for c in children if c.kind == "meta"],
           description=f"The uncollapsed tree at `{meta}`'s level under `{risk}`: correlation clusters of children, "
                       f"cluster and intra-cluster weights, child metas' trees by reference.", **common)
    def meta_cluster_tree(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        refs = {c.name: (meta_tree_name(c.name, risk) if c.kind == "meta" else sleeve_weights_name(c.name, risk))
                for c in children}
        last_tree = None
        for d in dates:
            w = require(lh.read_partition("meta_weights", n_mw, d), n_mw, d).to_pandas().set_index("child")["weight"]
            matrix = wide(require(lh.read_partition("meta_returns", n_mr, d), n_mr, d), "ret", columns="child")
            tree = cluster_tree(meta, w.reindex(names), matrix.reindex(columns=names), TREE_THRESHOLD, refs)
            last_tree = with_keys(tree, d, meta=meta, risk=risk)
            lh.write_partition("meta_cluster_tree", n_tree, d, last_tree)
        return MaterializeResult(metadata=table_metadata(
            lh, "meta_cluster_tree", n_tree, dates, len(last_tree) * len(dates), last_tree,
            **({"tree": MetadataValue.md(render_tree(last_tree))} if len(dates) == 1 else {})))

    @asset(name=n_mpr, group_name="meta", kinds={"numpy", "parquet"},
           deps=[n_mw] + stream_assets,  # the previous date's meta weights earn this period
           check_specs=[AssetCheckSpec("returns_in_bounds", asset=n_mpr, blocking=True,
                                       description="Daily returns finite and within [-1, 10]")],
           description=f"`{meta}`'s own out-of-sample daily returns under `{risk}`: the previous rebalance's meta "
                       f"weights drifting over the children's realised streams. This is what a parent meta sees.",
           **common)
    def meta_portfolio_returns(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows_by_child = {c.name: read_stream(lh, c, risk, dates[0], dates[-1]) for c in children}
        rows, last, failures, skipped = 0, None, {}, 0
        for d in dates:
            prev = previous_dates(m.calendar, d, 1)
            wf = lh.read_partition("meta_weights", n_mw, prev[-1]) if prev else None
            frame = pd.DataFrame(columns=["date", "ret", "weights_date"])
            if wf is None:
                skipped += 1
            else:
                w = wf.to_pandas().set_index("child")["weight"].reindex(names)
                # Outer join: a child without a row on a day (no stream yet, another calendar) earns 0
                # that day; an inner join would drop the other children's realised returns.
                matrix, _ = aggregate({c: _series(r, prev[-1], d) for c, r in rows_by_child.items()}, join="outer")
                if len(matrix):
                    port, _ = drift(w, matrix[names])
                    frame = pd.DataFrame({"date": port.index.tz_localize(None).date, "ret": port.to_numpy(),
                                          "weights_date": prev[-1]})
            last = with_keys(frame, d, meta=meta, risk=risk)
            lh.write_partition("meta_portfolio_returns", n_mpr, d, last)
            rows += len(last)
            problem = returns_problem(frame["ret"], "daily return") if len(frame) else None
            if problem:
                failures[d.isoformat()] = problem
        return MaterializeResult(metadata=table_metadata(lh, "meta_portfolio_returns", n_mpr, dates, rows, last,
                                                         dates_without_previous_weights=skipped),
                                 check_results=[check_result("returns_in_bounds", failures, len(dates))])

    child_weight_assets = [sleeve_weights_name(c.name, risk) if c.kind == "sleeve" else flattened_name(c.name, risk)
                           for c in children]
    directions = {s: m.sleeves[s].direction for s in m.descendant_sleeves(meta)}
    # net weight = sum over paths of (meta weight x child's weight): the columns it is made of
    sources = [TableColumnDep(asset_key=AssetKey(n_mw), column_name="weight")] + [
        TableColumnDep(asset_key=AssetKey(a), column_name="net_weight" if a.startswith("flattened") else "weight")
        for a in child_weight_assets]
    column_lineage = TableColumnLineage(deps_by_column={
        "net_weight": sources, "long_weight": sources, "short_weight": sources,
        "symbol": [TableColumnDep(asset_key=AssetKey(a), column_name="symbol") for a in child_weight_assets]})

    @asset(name=n_flat, group_name="meta", kinds={"pandas", "parquet"},
           deps=[n_mw] + child_weight_assets + [prices_name(u) for u in universes],
           check_specs=[AssetCheckSpec("physical_and_conserved", asset=n_flat, blocking=True,
                                       description="Physical symbols present in prices; net = long - short; "
                                                   "paths conserve: sum = net, gross = net gross + netted away"),
                        AssetCheckSpec("directional_sign_test", asset=n_flat, blocking=True,
                                       description="Every path keeps its sleeve's direction; shorts never go long")],
           description=f"`{meta}` under `{risk}` collapsed to physical symbols: signed net weight per symbol, long "
                       f"and short gross apart, and every root-to-atom path in `flattened_contributions`.",
           **common)
    def flattened_weights(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, failures, sign_failures = 0, None, {}, {}
        for d in dates:
            w = require(lh.read_partition("meta_weights", n_mw, d), n_mw, d).to_pandas().set_index("child")["weight"]
            child_rows = {}
            for c in children:
                if c.kind == "sleeve":
                    name = sleeve_weights_name(c.name, risk)
                    sw = require(lh.read_partition("sleeve_weights", name, d), name, d).to_pandas()
                    child_rows[c.name] = sleeve_contributions(c.name, sw)
                else:
                    name = flattened_name(c.name, risk)
                    child_rows[c.name] = require(lh.read_partition("flattened_contributions", name, d), name, d) \
                        .to_pandas().drop(columns=["rebalance_date", "meta", "risk"])
            contributions = flatten(meta, w, child_rows)
            flat = net_by_symbol(contributions)
            physical = set()
            for u in universes:
                p = lh.read_partition("prices", prices_name(u), d)
                physical |= set(p["symbol"].unique().to_list()) if p is not None else set()
            last = with_keys(flat, d, meta=meta, risk=risk)
            lh.write_partition("flattened_weights", n_flat, d, last)
            lh.write_partition("flattened_contributions", n_flat, d, with_keys(contributions, d, meta=meta, risk=risk))
            rows += len(last)
            problem = flattened_problem(flat, contributions, physical)
            if problem:
                failures[d.isoformat()] = problem
            sign_issue = sign_problem(contributions, directions)
            if sign_issue:
                sign_failures[d.isoformat()] = sign_issue
        gross = float(last["net_weight"].abs().sum()) if len(last) else 0.0
        return MaterializeResult(metadata=table_metadata(
            lh, "flattened_weights", n_flat, dates, rows, last, gross_exposure_last_date=gross,
            **{"dagster/column_lineage": column_lineage},
            net_exposure_last_date=float(last["net_weight"].sum()) if len(last) else 0.0),
            check_results=[check_result("physical_and_conserved", failures, len(dates)),
                           check_result("directional_sign_test", sign_failures, len(dates))])

    @asset(name=n_rep, group_name="reports", kinds={"markdown", "parquet"},
           deps=[n_mr, n_tree, n_flat, n_mw, n_mpr],  # the last two over the trailing window
           description=f"Markdown report of `{meta}` under `{risk}`: allocation with effective N and health, "
                       f"allocation over time, children's correlations, trailing out-of-sample performance and "
                       f"equity curve, fallback and veto events, top physical holdings with contributors, "
                       f"cluster tree.", **common)
    def meta_report(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        span = dt.timedelta(days=window_days)
        perf_rows = lh.read("meta_portfolio_returns", n_mpr, dates[0] - span, dates[-1]).to_pandas()
        perf_rows["rebalance_date"] = pd.to_datetime(perf_rows["rebalance_date"]).dt.date
        history = lh.read("meta_weights", n_mw, dates[0] - span, dates[-1]).to_pandas()
        history["rebalance_date"] = pd.to_datetime(history["rebalance_date"]).dt.date
        md = ""
        for d in dates:
            w = require(lh.read_partition("meta_weights", n_mw, d), n_mw, d).to_pandas()
            tree = require(lh.read_partition("meta_cluster_tree", n_tree, d), n_tree, d).to_pandas()
            flat = require(lh.read_partition("flattened_weights", n_flat, d), n_flat, d).to_pandas()
            matrix = wide(require(lh.read_partition("meta_returns", n_mr, d), n_mr, d), "ret", columns="child")
            returns = _in_window(perf_rows, d, span).sort_values("date")
            md = render_report(meta, risk, d, w, tree, flat, returns, _in_window(history, d, span), matrix)
            lh.write_partition("meta_report", n_rep, d, with_keys(pd.DataFrame({"markdown": [md]}), d,
                                                                  meta=meta, risk=risk))
        extra = {"report": MetadataValue.md(md)} if len(dates) == 1 else {
            "report": MetadataValue.md(f"Range run {dates[0]} .. {dates[-1]}: one report per date in the "
                                       f"`meta_report` table. Materialise a single date to see it here.")}
        return MaterializeResult(metadata={**table_metadata(lh, "meta_report", n_rep, dates, len(dates), None),
                                           **extra})

    return [meta_returns, meta_weights, meta_cluster_tree, meta_portfolio_returns, flattened_weights, meta_report]


def render_tree(tree: pd.DataFrame) -> str:
    lines = []
    for row in tree.sort_values(["level"]).itertuples():
        if row.kind == "meta":
            lines.append(f"- **{row.node}** (1.0000)")
    for row in tree[tree["kind"] == "cluster"].itertuples():
        lines.append(f"  - {row.node.rsplit('/', 1)[-1]}: {row.weight:.4f}")
        for c in tree[tree["parent"] == row.node].itertuples():
            ref = f" -> `{c.ref}`" if c.ref else ""
            lines.append(f"    - {c.node}: {c.weight:.4f} (intra {c.intra_weight:.4f}){ref}")
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


def render_report(meta: str, risk: str, d: dt.date, weights: pd.DataFrame, tree: pd.DataFrame,
                  flat: pd.DataFrame, returns: pd.DataFrame, history: pd.DataFrame, matrix: pd.DataFrame) -> str:
    """The report of one meta lens at one date (every section computed from data <= d)."""
    w = weights.set_index("child")["weight"]
    eff_n = 1.0 / float((w ** 2).sum()) if len(w) else float("nan")
    perf = performance(returns["ret"]) if len(returns) else performance(pd.Series(dtype=float))
    pct = lambda v: "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2%}"  # noqa: E731
    alloc = weights[["child", "child_kind", "weight", "raw_weight", "success_share", "vetoed"]]
    over_time = history.sort_values("rebalance_date").pivot_table(index="rebalance_date", columns="child",
                                                                   values="weight")
    time_lines = [f"- `{c}` {sparkline(over_time[c])} {over_time[c].iloc[0]:.2f} -> {over_time[c].iloc[-1]:.2f} "
                  f"(min {over_time[c].min():.2f}, max {over_time[c].max():.2f})" for c in over_time.columns]
    events = history[~history["status"].str.startswith("optimised") | (history["vetoed"] != "")]
    events = events.groupby("rebalance_date").agg(status=("status", "first"),
                                                  vetoed=("vetoed", lambda v: "; ".join(x for x in v if x)))
    corr = matrix.corr().round(2) if matrix.shape[1] > 1 and len(matrix) > 2 else pd.DataFrame()
    wealth = np.cumprod(1.0 + returns["ret"].to_numpy()) if len(returns) else np.array([])
    top = flat.head(10)[["symbol", "net_weight", "long_weight", "short_weight", "contributors"]]
    return "\n".join([
        f"# {meta} / {risk} as of {d.isoformat()}",
        "",
        f"**Allocation** ({weights['engine'].iloc[0]}/{weights['profile_used'].iloc[0]}, effective N {eff_n:.2f}): "
        f"{weights['status'].iloc[0]}",
        "",
        markdown_table(alloc),
        "",
        f"## Allocation over the last {len(over_time)} rebalances",
        "",
        *time_lines,
        "",
        f"## Trailing out-of-sample performance ({perf['days']} days, stitched)",
        "",
        (f"Total return {pct(perf['total_return'])}, CAGR {pct(perf['cagr'])}, vol {pct(perf['ann_vol'])}, "
         f"Sharpe {perf['sharpe']:.2f}, max drawdown {pct(perf['max_drawdown'])}.  \n"
         f"Equity curve {sparkline(wealth[:: max(1, len(wealth) // 60)])} ({wealth[-1]:.3f})")
        if perf["days"] > 1 else "Not enough out-of-sample history yet.",
        "",
        "## Children's correlations (meta window)",
        "",
        markdown_table(corr.reset_index().rename(columns={"index": "child"}), floatfmt=".2f"),
        "",
        f"## Fallback and veto events ({len(events)} of {len(over_time)} rebalances)",
        "",
        markdown_table(events.reset_index().tail(8)) if len(events) else "None: every allocation optimised.",
        "",
        "## Top physical holdings (signed net)",
        "",
        markdown_table(top),
        "",
        f"Gross {flat['net_weight'].abs().sum():.4f}, net {flat['net_weight'].sum():.4f}, {len(flat)} symbols.",
        "",
        "## Cluster tree",
        "",
        render_tree(tree),
    ])
