"""tournament_<sleeve>: every engine x profile of a sleeve walked forward side by side.

Each rebalance date stores every contender's weights (`tournament_weights`) and the daily
returns its previous weights earned since the last date (`tournament_returns`, wealth carried
over). A range run's metadata is the scoreboard of that range: metrics on the stitched series,
the best engine per profile in bold, equity curves and drawdowns of each profile's best engine.
"""


import datetime as dt

import pandas as pd
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quant_assets.assets.common import (
    OWNER,
    PREVIOUS_PARTITION,
    SINGLE_RUN,
    GraphContext,
    candidates_name,
    features_name,
    prices_name,
    regime_name,
    require,
    returns_name,
    run_dates,
    selection_name,
    table_metadata,
    tournament_name,
    with_keys,
)
from quant_assets.assets.funnel import benchmark_symbols, regime_label
from quant_assets.assets.sleeves import atom_scores, sleeve_pool
from quant_assets.calendar import previous_dates
from quant_assets.lakehouse import LakehouseResource
from quant_assets.optimise import PLATFORM_PROFILES, optimise
from quant_assets.plots import drawdowns_md, equity_curves_md
from quant_assets.selection import synthetic_long
from quant_assets.simulate import rebalance_period
from quant_assets.tournament import scoreboard, scoreboard_markdown, stitched


def tournament_asset(ctx: GraphContext, sleeve: str):
    m = ctx.manifest
    cfg, t = m.sleeves[sleeve], m.tournament
    universe, lb = cfg.universe, m.lookbacks
    rate = m.friction[m.universes[universe].asset_class].rate
    n_t, n_sel, n_rets, n_feats = tournament_name(sleeve), selection_name(sleeve), returns_name(universe), \
        features_name(universe)
    n_prices = prices_name(universe)
    contenders = [(p, "platform") if p in PLATFORM_PROFILES else None for p in t.profiles]
    contenders = sorted({c for c in contenders if c} |
                        {(p, e) for p in t.profiles if p not in PLATFORM_PROFILES for e in t.engines})

    @asset(name=n_t, group_name="reports", kinds={"numpy", "parquet"}, partitions_def=ctx.partitions,
           backfill_policy=SINGLE_RUN, owners=[OWNER],
           deps=[n_sel, n_rets, n_feats, n_prices, regime_name(universe), candidates_name(universe),
                 AssetDep(n_t, partition_mapping=PREVIOUS_PARTITION)],
           description=f"Tournament of sleeve `{sleeve}`: {len(contenders)} contenders (engines {t.engines} x "
                       f"profiles {t.profiles}) optimised on the same winners and walked forward with the same "
                       f"friction and wealth carry. A range run's metadata is that range's scoreboard.")
    def tournament(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        cache: dict[dt.date, pd.DataFrame | None] = {}
        state: dict[tuple[str, str], tuple[float, bool]] | None = None

        def weights_at(day: dt.date) -> pd.DataFrame | None:
            if day not in cache:
                f = lh.read_partition("tournament_weights", n_t, day)
                cache[day] = None if f is None else f.to_pandas()
            return cache[day]

        def stored_state(day: dt.date) -> dict:
            f = lh.read_partition("tournament_returns", n_t, day)
            if f is None or f.is_empty():
                return {}
            last = f.to_pandas().groupby(["profile", "engine"]).tail(1)
            return {(r.profile, r.engine): (float(r.wealth), bool(r.bankrupt)) for r in last.itertuples()}

        for d in dates:
            prev = previous_dates(m.calendar, d, 2)
            if state is None:
                state = stored_state(prev[-1]) if prev else {}
            # 1. this date's weights for every contender
            sel = require(lh.read_partition("selection", n_sel, d), n_sel, d).to_pandas()
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d).tail(lb.optimisation_days)
            feats = require(lh.read_partition("features", n_feats, d), n_feats, d).to_pandas().set_index("symbol")
            bench, regime = benchmark_symbols(lh, universe, d), regime_label(lh, universe, d)
            sign = -1.0 if cfg.direction == "short" else 1.0
            rows = []
            for profile, engine in contenders:
                pool = sleeve_pool(profile, sel, rets, bench, cfg.logic, cfg.direction)
                ids = pool["atom_id"].tolist()
                symbols = pool["symbol"].tolist()
                streams = synthetic_long(rets[symbols], cfg.direction).set_axis(ids, axis=1)
                res = optimise(streams, profile, engine="custom" if engine == "platform" else engine,
                               clusters=pd.Series(pool["cluster"].to_numpy(int), index=ids), config=cfg.risk,
                               regime=regime, **atom_scores(streams, feats, symbols, sign))
                w = res.weights.reindex(ids).to_numpy(float)
                rows.append(pd.DataFrame({"engine": engine, "profile": profile, "atom_id": ids,
                                          "symbol": pool["symbol"].to_numpy(), "weight": w,
                                          "profile_used": res.profile_used}))
            weights = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["engine", "profile"])
            weights = weights[weights["weight"] > 0]
            lh.write_partition("tournament_weights", n_t, d, with_keys(weights, d, sleeve=sleeve))
            cache[d] = with_keys(weights, d, sleeve=sleeve)
            # 2. the returns the previous date's weights earned over (previous date, d]
            w1 = weights_at(prev[-1]) if prev else None
            out = []
            if w1 is not None:  # every contender every date: an empty book is cash (liquidated if it held any)
                w2 = weights_at(prev[0]) if len(prev) == 2 else None
                raw = require(lh.read_wide("prices", n_prices, d, "close"), n_prices, d).pct_change(fill_method=None)
                for profile, engine in contenders:
                    target = w1[(w1["profile"] == profile) & (w1["engine"] == engine)]
                    before = None if w2 is None else w2[(w2["profile"] == profile) & (w2["engine"] == engine)]
                    wealth, bankrupt = state.get((profile, engine), (1.0, False))
                    period = rebalance_period(raw, target, before if before is not None and len(before) else None,
                                              (prev[0] if w2 is not None else None, prev[-1], d), cfg.direction,
                                              rate, start_wealth=wealth, bankrupt=bankrupt)
                    state[(profile, engine)] = (period.end_wealth, period.bankrupt)
                    daily = period.daily.rename_axis("date").reset_index()
                    out.append(daily.assign(engine=engine, profile=profile, date=daily["date"].dt.date))
            frame = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["engine", "profile", "date"])
            lh.write_partition("tournament_returns", n_t, d, with_keys(frame, d, sleeve=sleeve))

        returns = lh.read("tournament_returns", n_t, dates[0], dates[-1]).to_pandas()
        weights = lh.read("tournament_weights", n_t, dates[0], dates[-1]).to_pandas()
        board = scoreboard(returns, weights)
        md = {"contenders": len(contenders), "scoreboard": MetadataValue.md(
            f"Scoreboard {dates[0]} .. {dates[-1]} ({len(dates)} rebalances), best engine per profile in bold "
            f"(highest Sharpe):\n\n" + scoreboard_markdown(board))}
        best = board[board["best_engine"]] if len(board) else board
        if len(best):
            series = stitched(returns)
            curves = {f"{r.profile} ({r.engine})": series[(r.profile, r.engine)] for r in best.itertuples()}
            md["equity_curves"] = MetadataValue.md(equity_curves_md(curves, f"{sleeve}: best engine per profile"))
            md["drawdowns"] = MetadataValue.md(drawdowns_md(curves, f"{sleeve}: drawdowns"))
            md["best_profile"] = str(best.sort_values("sharpe", ascending=False).iloc[0]["profile"])
        return MaterializeResult(metadata=table_metadata(lh, "tournament_returns", n_t, dates, len(returns), None, **md))

    return tournament
