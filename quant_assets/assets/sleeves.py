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
    TimeWindowPartitionMapping,
    asset,
)

from quant_assets.assets.common import (
    OWNER,
    SINGLE_RUN,
    GraphContext,
    audit_check,
    check_result,
    features_name,
    prices_name,
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
from quant_assets.selection import atom_id, select, synthetic_long
from quant_assets.simulate import drift, holding_period, turnover

PREVIOUS_TWO = TimeWindowPartitionMapping(start_offset=-2, end_offset=-1)


def _weights_series(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(frame["weight"].to_numpy(float), index=frame["atom_id"].to_numpy()) if len(frame) else \
        pd.Series(dtype=float)


def _between(frame: pd.DataFrame, after: dt.date, until: dt.date) -> pd.DataFrame:
    """Rows dated in (after, until]: one holding period."""
    return frame[(frame.index > pd.Timestamp(after)) & (frame.index <= pd.Timestamp(until))]


def sleeve_assets(ctx: GraphContext, sleeve: str) -> list:
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    universe = cfg.universe
    rate = m.friction[m.universes[universe].asset_class].rate
    lb = m.lookbacks
    n_sel, n_feats, n_rets = selection_name(sleeve), features_name(universe), returns_name(universe)
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER])

    @asset(name=n_sel, group_name="selection", kinds={"scipy", "parquet"}, deps=[n_feats, n_rets],
           description=f"Sleeve `{sleeve}` ({cfg.logic}, {cfg.direction}): every candidate ranked, clustered "
                       f"(Ward, threshold {cfg.selection.cluster_threshold}), vetoed or picked, with the "
                       f"stage that picked it.", **common)
    def selection(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, winners = 0, None, []
        for d in dates:
            feats = require(lh.read_partition("features", n_feats, d), n_feats, d).to_pandas().set_index("symbol")
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d).tail(lb.optimisation_days)
            picked = select(feats, rets, cfg)
            last = with_keys(picked, d, sleeve=sleeve)
            lh.write_partition("selection", n_sel, d, last)
            rows += len(last)
            winners.append(int(picked["selected"].sum()))
        by_stage = last["selected_by"].value_counts().drop("", errors="ignore").to_dict() if last is not None else {}
        return MaterializeResult(metadata=table_metadata(
            lh, "selection", n_sel, dates, rows, last[last["selected"]] if last is not None else None,
            winners_mean=float(pd.Series(winners).mean()), winners_last_date=winners[-1],
            winners_by_stage_last_date=by_stage))

    out = [selection]
    for risk in cfg.risk_profiles:
        out += _risk_assets(ctx, sleeve, risk, rate)
    return out


def _risk_assets(ctx: GraphContext, sleeve: str, risk: str, rate: float) -> list:
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    universe = cfg.universe
    lb = m.lookbacks
    n_sel, n_rets, n_prices = selection_name(sleeve), returns_name(universe), prices_name(universe)
    n_w, n_r = sleeve_weights_name(sleeve, risk), sleeve_returns_name(sleeve, risk)
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER])

    @asset(name=n_w, group_name="sleeves", kinds={cfg.engine, "parquet"}, deps=[n_sel, n_rets],
           check_specs=[AssetCheckSpec("weights_valid", asset=n_w, blocking=True,
                                       description="Finite, >= 0, summing to 1 (or cash); net signed by direction"),
                        AssetCheckSpec("audit_complete", asset=n_w, blocking=True,
                                       description="Every optimisation intent has an outcome; ledger chain intact"),
                        AssetCheckSpec("directional_sign_test", asset=n_w, blocking=True,
                                       description="Optimiser streams are r (long) or exactly -min(r, 1) (short)")],
           description=f"`{risk}` weights of sleeve `{sleeve}`'s winners, optimised with {cfg.engine} on the last "
                       f"{lb.optimisation_days} sessions; failures fall back along a recorded chain to equal weight.",
           **common)
    def sleeve_weights(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        ledger = lh.ledger()
        rows, last, failures, fallbacks, chains, sign_failures = 0, None, {}, 0, {}, {}
        for d in dates:
            sel = require(lh.read_partition("selection", n_sel, d), n_sel, d).to_pandas()
            winners = sel[sel["selected"]]
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d).tail(lb.optimisation_days)
            symbols = [s for s in winners["symbol"] if s in rets.columns]
            ids = [atom_id(s, cfg.logic, cfg.direction) for s in symbols]
            streams = synthetic_long(rets[symbols], cfg.direction)
            sign_issue = synthetic_stream_problem(streams, rets[symbols], cfg.direction)
            if sign_issue:
                sign_failures[d.isoformat()] = sign_issue
            streams.columns = ids
            clusters = pd.Series(winners.set_index("symbol").loc[symbols, "cluster"].to_numpy(), index=ids)
            intent = ledger.intent(step="sleeve_optimise", asset=n_w, partition=d.isoformat(), run_id=context.run.run_id,
                                   params={"engine": cfg.engine, "profile": risk, "chain": list(FALLBACK_CHAINS[risk]),
                                           "window_days": lb.optimisation_days},
                                   input_hashes={"streams": frame_hash(streams),
                                                 "selection": frame_hash(winners[["symbol", "cluster", "score"]])})
            try:
                result = optimise(streams, risk, engine=cfg.engine, clusters=clusters)
            except Exception as err:
                ledger.outcome(intent, status="error", output_hash=None, detail={"error": repr(err)[:300]})
                raise
            sign = -1.0 if cfg.direction == "short" else 1.0
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
                                   "chain": result.chain_text()})
            last = with_keys(frame, d, sleeve=sleeve, risk=risk)
            lh.write_partition("sleeve_weights", n_w, d, last)
            rows += len(last)
            fallbacks += result.fallback_used
            chains[d.isoformat()] = result.chain_text()
            problem = sleeve_weights_problem(frame)
            if problem:
                failures[d.isoformat()] = problem
        md = table_metadata(lh, "sleeve_weights", n_w, dates, rows, last,
                            fallbacks_in_run=fallbacks, engine=cfg.engine, requested_profile=risk,
                            fallback_chain_last_date=chains[dates[-1].isoformat()],
                            fallback_dates=MetadataValue.json({k: v for k, v in chains.items() if "failed" in v}))
        return MaterializeResult(metadata=md, check_results=[
            check_result("weights_valid", failures, len(dates)), audit_check(lh, n_w, dates),
            check_result("directional_sign_test", sign_failures, len(dates), direction=cfg.direction)])

    @asset(name=n_r, group_name="sleeves", kinds={"numpy", "parquet"},
           deps=[AssetDep(n_w, partition_mapping=PREVIOUS_TWO), n_prices],
           check_specs=[AssetCheckSpec("returns_in_bounds", asset=n_r, blocking=True,
                                       description="Daily net returns finite and within [-1, 10]")],
           description=f"Out-of-sample daily returns of sleeve `{sleeve}` under `{risk}`: the previous rebalance's "
                       f"weights drifting over (previous date, this date], net of friction ({rate * 1e4:.0f} bps "
                       f"on traded notional).", **common)
    def sleeve_returns(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, failures, skipped = 0, None, {}, []
        weights_cache: dict[dt.date, pd.DataFrame | None] = {}

        def weights_at(day: dt.date) -> pd.DataFrame | None:
            if day not in weights_cache:
                f = lh.read_partition("sleeve_weights", n_w, day)
                weights_cache[day] = None if f is None else f.to_pandas()
            return weights_cache[day]

        for d in dates:
            prev = previous_dates(m.calendar, d, 2)
            w1 = weights_at(prev[-1]) if prev else None
            if w1 is None:
                frame = pd.DataFrame(columns=["date", "gross_return", "cost", "net_return", "turnover", "weights_date"])
                skipped.append(d.isoformat())
            else:
                d1 = prev[-1]
                closes = require(lh.read_wide("prices", n_prices, d, "close"), n_prices, d)
                raw = closes.pct_change(fill_method=None)
                atoms = dict(zip(w1["atom_id"], w1["symbol"]))
                w2 = weights_at(prev[0]) if len(prev) == 2 else None
                if w2 is not None:
                    atoms.update(zip(w2["atom_id"], w2["symbol"]))
                streams = synthetic_long(raw.reindex(columns=sorted(set(atoms.values()))), cfg.direction)
                atom_streams = pd.DataFrame({a: streams[s] for a, s in atoms.items()}, index=streams.index)
                current = None
                if w2 is not None:  # where the previous period's weights had drifted to by d1
                    _, current = drift(_weights_series(w2), _between(atom_streams, prev[0], d1))
                target = _weights_series(w1)
                period = holding_period(target, _between(atom_streams, d1, d), turnover(target, current), rate)
                frame = period.daily.rename_axis("date").reset_index()
                frame["date"] = frame["date"].dt.date
                frame["weights_date"] = d1
            last = with_keys(frame, d, sleeve=sleeve, risk=risk)
            lh.write_partition("sleeve_returns", n_r, d, last)
            rows += len(last)
            problem = returns_problem(frame["net_return"], "daily net return") if len(frame) else None
            if problem:
                failures[d.isoformat()] = problem
        md = table_metadata(lh, "sleeve_returns", n_r, dates, rows, last,
                            dates_without_previous_weights=len(skipped),
                            note=("No previous weights for: " + ", ".join(skipped[:5]) +
                                  (" ..." if len(skipped) > 5 else "")) if skipped else "")
        return MaterializeResult(metadata=md, check_results=[check_result("returns_in_bounds", failures, len(dates))])

    return [sleeve_weights, sleeve_returns]
