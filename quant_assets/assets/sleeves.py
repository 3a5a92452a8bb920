"""Per-sleeve assets: selection -> sleeve_weights_<sleeve>_<risk> -> sleeve_returns_<sleeve>_<risk>.

A sleeve is a universe + a strategy logic + a direction. Its atoms are (symbol, logic,
direction); optimisers see their synthetic-long streams (shorts: -min(r, 1)), and the signed
physical weight is kept next to the atom weight.
"""


import datetime as dt

import pandas as pd
from dagster import (
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quant_assets.assets.common import (
    OWNER,
    PREVIOUS_PARTITION,
    SINGLE_RUN,
    GraphContext,
    audit_check,
    candidates_name,
    check_result,
    performance_metadata,
    features_name,
    prices_name,
    regime_name,
    require,
    returns_name,
    run_dates,
    selection_name,
    sleeve_returns_name,
    sleeve_weights_name,
    table_metadata,
    with_keys,
)
from quant_assets.calendar import previous_dates
from quant_assets.lakehouse import LakehouseResource
from quant_assets.checks import returns_problem, sleeve_weights_problem, synthetic_stream_problem
from quant_assets.audit import frame_hash, weights_hash
from quant_assets.optimise import FALLBACK_CHAINS, optimise
from quant_assets.assets.funnel import regime_label, benchmark_symbols, sleeve_funnel_assets
from quant_assets.features import antifragility_matrix
from quant_assets.selection import atom_id, synthetic_long
from quant_assets.simulate import BANKRUPTCY_FLOOR, DAILY_COLUMNS, rebalance_period




POOL_DESCRIPTION = {
    "market": "the universe's benchmarks (equal weight)",
    "benchmark": "its winners (equal weight: what optimisation adds)",
    "raw_pool_ew": "the whole raw pool, benchmarks excluded (equal weight: what selection adds)",
}


def sleeve_pool(risk: str, selection: pd.DataFrame, returns: pd.DataFrame, benchmarks: set[str], logic: str,
          direction: str) -> pd.DataFrame:
    """The atoms a profile allocates over: symbol, atom_id, cluster.

    Most profiles hold the winners; the baselines hold the benchmarks (`market`) or every
    recruitable symbol of the pool (`raw_pool_ew`), as atoms of the sleeve's own logic and direction.
    """
    if risk == "market":
        symbols = sorted(s for s in benchmarks if s in returns.columns)
        return pd.DataFrame({"symbol": symbols, "atom_id": [atom_id(s, logic, direction) for s in symbols],
                             "cluster": 0})
    if risk == "raw_pool_ew":
        pool = selection[selection["symbol"].isin(returns.columns)]
    else:
        pool = selection[selection["selected"] & selection["symbol"].isin(returns.columns)]
    return pd.DataFrame({"symbol": pool["symbol"].to_numpy(), "atom_id": pool["atom_id"].to_numpy(),
                         "cluster": pool["cluster"].to_numpy(int)})


def atom_scores(streams: pd.DataFrame, feats: pd.DataFrame, symbols: list[str], sign: float) -> dict:
    """What barbell and hybrid weighting need per atom, oriented like the atom's own stream:
    antifragility of the synthetic-long stream (a short's upside is the stock's downside) and the
    stock's momentum times the sleeve's sign."""
    ids = list(streams.columns)
    return {"antifragility": pd.Series(antifragility_matrix(streams.fillna(0.0)), index=ids),
            "momentum": pd.Series(sign * feats["momentum"].reindex(symbols).to_numpy(float), index=ids)}


def sleeve_assets(ctx: GraphContext, sleeve: str) -> list:
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    rate = m.friction[m.universes[cfg.universe].asset_class].rate
    out = sleeve_funnel_assets(ctx, sleeve)
    for risk in cfg.risk_profiles:
        out += _risk_assets(ctx, sleeve, risk, rate)
    return out


def _risk_assets(ctx: GraphContext, sleeve: str, risk: str, rate: float) -> list:
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    universe = cfg.universe
    lb = m.lookbacks
    n_sel, n_rets, n_prices = selection_name(sleeve), returns_name(universe), prices_name(universe)
    n_feats = features_name(universe)
    n_w, n_r = sleeve_weights_name(sleeve, risk), sleeve_returns_name(sleeve, risk)
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER])

    @asset(name=n_w, group_name="sleeves", kinds={cfg.engine, "parquet"},
           deps=[n_sel, n_rets, n_feats, regime_name(universe), candidates_name(universe)],
           check_specs=[AssetCheckSpec("weights_valid", asset=n_w, blocking=True,
                                       description="Finite, >= 0, summing to 1 (or cash); net signed by direction"),
                        AssetCheckSpec("audit_complete", asset=n_w, blocking=True,
                                       description="Every optimisation intent has an outcome; ledger chain intact"),
                        AssetCheckSpec("directional_sign_test", asset=n_w, blocking=True,
                                       description="Optimiser streams are r (long) or exactly -min(r, 1) (short)")],
           description=f"`{risk}` weights of sleeve `{sleeve}` over {POOL_DESCRIPTION.get(risk, 'its winners')}, "
                       f"optimised with {cfg.engine} on the last {lb.optimisation_days} sessions; failures fall back "
                       f"along a recorded chain ({' -> '.join(FALLBACK_CHAINS[risk])}). The provenance of every "
                       f"date (engine, variant, solver, covariance, chain with reasons) is in the audit ledger.",
           **common)
    def sleeve_weights(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        ledger = lh.ledger()
        rows, last, failures, fallbacks, chains, sign_failures = 0, None, {}, 0, {}, {}
        provenance = {}
        for d in dates:
            sel = require(lh.read_partition("selection", n_sel, d), n_sel, d).to_pandas()
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d).tail(lb.optimisation_days)
            pool = sleeve_pool(risk, sel, rets, benchmark_symbols(lh, universe, d), cfg.logic, cfg.direction)
            symbols, ids = pool["symbol"].tolist(), pool["atom_id"].tolist()
            streams = synthetic_long(rets[symbols], cfg.direction)
            sign_issue = synthetic_stream_problem(streams, rets[symbols], cfg.direction)
            if sign_issue:
                sign_failures[d.isoformat()] = sign_issue
            streams.columns = ids
            clusters = pd.Series(pool["cluster"].to_numpy(int), index=ids)
            feats = require(lh.read_partition("features", n_feats, d), n_feats, d).to_pandas().set_index("symbol")
            sign = -1.0 if cfg.direction == "short" else 1.0
            regime = regime_label(lh, universe, d)
            intent = ledger.intent(step="sleeve_optimise", asset=n_w, partition=d.isoformat(), run_id=context.run.run_id,
                                   params={"engine": cfg.engine, "profile": risk, "chain": list(FALLBACK_CHAINS[risk]),
                                           "window_days": lb.optimisation_days, "regime": regime,
                                           "config": cfg.risk.model_dump(mode="json")},
                                   input_hashes={"streams": frame_hash(streams),
                                                 "selection": frame_hash(pool[["symbol", "cluster"]])})
            try:
                result = optimise(streams, risk, engine=cfg.engine, clusters=clusters, config=cfg.risk, regime=regime,
                                  **atom_scores(streams, feats, symbols, sign))
            except Exception as err:
                ledger.outcome(intent, status="error", output_hash=None, detail={"error": repr(err)[:300]})
                raise
            frame = pd.DataFrame({
                "atom_id": ids, "symbol": symbols, "direction": cfg.direction.upper(),
                "weight": result.weights.reindex(ids).to_numpy(float),
                "net_weight": sign * result.weights.reindex(ids).to_numpy(float),
                "cluster": clusters.to_numpy(int), "engine": result.engine, "profile_used": result.profile_used,
            })
            frame = frame[frame["weight"] > 0] if result.profile_used != "none" else frame.iloc[0:0]
            ledger.outcome(intent, status=("no_assets" if result.profile_used == "none" else
                                           "fallback" if result.fallback_used else "success"),
                           output_hash=weights_hash("sleeve_weights", frame),
                           detail={"profile_used": result.profile_used, "engine": result.engine,
                                   "chain": result.chain_text(), "provenance": result.provenance})
            last = with_keys(frame, d, sleeve=sleeve, risk=risk)
            lh.write_partition("sleeve_weights", n_w, d, last)
            rows += len(last)
            fallbacks += result.fallback_used
            chains[d.isoformat()] = result.chain_text()
            provenance = result.provenance
            problem = sleeve_weights_problem(frame)
            if problem:
                failures[d.isoformat()] = problem
        md = table_metadata(lh, "sleeve_weights", n_w, dates, rows, last,
                            fallbacks_in_run=fallbacks, engine=cfg.engine, requested_profile=risk,
                            fallback_chain_last_date=chains[dates[-1].isoformat()],
                            provenance_last_date=MetadataValue.json(provenance),
                            fallback_dates=MetadataValue.json({k: v for k, v in chains.items() if "failed" in v}))
        return MaterializeResult(metadata=md, check_results=[
            check_result("weights_valid", failures, len(dates)), audit_check(lh, n_w, dates),
            check_result("directional_sign_test", sign_failures, len(dates), direction=cfg.direction)])

    @asset(name=n_r, group_name="sleeves", kinds={"numpy", "parquet"},
           deps=[n_w, n_prices,  # the weights of the two previous dates (SAME_DATE_DEPS)
                 AssetDep(n_r, partition_mapping=PREVIOUS_PARTITION)],  # wealth carries over from the last period
           check_specs=[AssetCheckSpec("returns_in_bounds", asset=n_r, blocking=True,
                                       description="Daily net returns finite and within [-1, 10]")],
           description=f"Out-of-sample daily returns of sleeve `{sleeve}` under `{risk}`: the previous rebalance's "
                       f"weights drifting over (previous date, this date], net of friction ({rate * 1e4:.0f} bps "
                       f"on traded notional). Wealth carries over from the previous partition; below "
                       f"{BANKRUPTCY_FLOOR:.0%} of the start the book is liquidated to cash and stays there.",
           **common)
    def sleeve_returns(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, failures, skipped, restarts = 0, None, {}, [], []
        weights_cache: dict[dt.date, pd.DataFrame | None] = {}
        state: tuple[float, bool] | None = None  # (wealth, bankrupt) at the end of the previous period

        def weights_at(day: dt.date) -> pd.DataFrame | None:
            if day not in weights_cache:
                f = lh.read_partition("sleeve_weights", n_w, day)
                weights_cache[day] = None if f is None else f.to_pandas()
            return weights_cache[day]

        def stored_state(day: dt.date) -> tuple[float, bool] | None:
            f = lh.read_partition("sleeve_returns", n_r, day)
            if f is None:
                return None
            f = f.filter(f["wealth"].is_not_null()) if "wealth" in f.columns else f.clear()
            return (1.0, False) if f.is_empty() else (float(f["wealth"][-1]), bool(f["bankrupt"][-1]))

        for d in dates:
            prev = previous_dates(m.calendar, d, 2)
            w1 = weights_at(prev[-1]) if prev else None
            if state is None:  # first date of this run: pick up where the stored history left off
                state = stored_state(prev[-1]) if prev else (1.0, False)
                if state is None:
                    state = (1.0, False)
                    if w1 is not None:
                        restarts.append(d.isoformat())
            if w1 is None:
                frame = pd.DataFrame(columns=["date", *DAILY_COLUMNS, "weights_date"])
                skipped.append(d.isoformat())
            else:
                d1 = prev[-1]
                closes = require(lh.read_wide("prices", n_prices, d, "close"), n_prices, d)
                w2 = weights_at(prev[0]) if len(prev) == 2 else None
                period = rebalance_period(closes.pct_change(fill_method=None), w1, w2,
                                          (prev[0] if w2 is not None else None, d1, d), cfg.direction, rate,
                                          start_wealth=state[0], bankrupt=state[1])
                state = (period.end_wealth, period.bankrupt)
                frame = period.daily.rename_axis("date").reset_index()
                frame["date"] = frame["date"].dt.date
                frame["weights_date"] = d1
            last = with_keys(frame, d, sleeve=sleeve, risk=risk)
            lh.write_partition("sleeve_returns", n_r, d, last)
            rows += len(last)
            problem = returns_problem(frame["net_return"], "daily net return") if len(frame) else None
            if problem:
                failures[d.isoformat()] = problem
        stitched = lh.read("sleeve_returns", n_r, dates[0], dates[-1]).to_pandas()
        md = table_metadata(lh, "sleeve_returns", n_r, dates, rows, last,
                            **performance_metadata(stitched),
                            wealth_end=float(state[0]), bankrupt=bool(state[1]),
                            wealth_restarted_at_1=", ".join(restarts) or "none",
                            dates_without_previous_weights=len(skipped),
                            note=("No previous weights for: " + ", ".join(skipped[:5]) +
                                  (" ..." if len(skipped) > 5 else "")) if skipped else "")
        return MaterializeResult(metadata=md, check_results=[check_result("returns_in_bounds", failures, len(dates))])

    return [sleeve_weights, sleeve_returns]
