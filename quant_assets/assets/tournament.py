"""tournament_<sleeve>: every engine x profile of a sleeve walked forward side by side (opt-in per sleeve).

Each rebalance date stores every contender's weights (`tournament_weights`) and the daily returns
its previous weights earned since the last date (`tournament_returns`, wealth carried over). Each
partition's metadata is the scoreboard of that period: metrics on the stitched series, the best
engine per profile in bold, equity curves and drawdowns of each profile's best engine.

The tournament is the costliest asset of the graph (19 contenders a date, some on library engines
at 5-50 ms a fit), so a sleeve takes part only when `tournament.sleeves` lists it.
"""

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quant_assets.allocation.optimise import PLATFORM_PROFILES, optimise_array
from quant_assets.allocation.pool import atom_scores, sleeve_pool
from quant_assets.assets.common import (
    PREVIOUS_PARTITION,
    SINGLE_RUN,
    GraphContext,
    LakehouseResource,
    Run,
    candidates_name,
    features_name,
    regime_name,
    returns_name,
    selection_name,
    table_metadata,
    tournament_name,
)
from quant_assets.assets.funnel import features_by_date, regime_by_date
from quant_assets.assets.market_data import universe_view, window_start
from quant_assets.assets.progress import track
from quant_assets.assets.sleeves import selections_by_date
from quant_assets.meta.plots import drawdowns_md, equity_curves_md
from quant_assets.selection.market import dense_matrix
from quant_assets.simulation.simulate import rebalance_period
from quant_assets.simulation.tournament import scoreboard, scoreboard_markdown, stitched


def tournament_asset(ctx: GraphContext, sleeve: str):
    m = ctx.manifest
    cfg, t = m.sleeves[sleeve], m.tournament
    universe, lookbacks = cfg.universe, m.lookbacks
    rate = m.friction[m.universes[universe].asset_class].rate
    tournament_key, selection_key, returns_key, features_key = (
        tournament_name(sleeve),
        selection_name(sleeve),
        returns_name(universe),
        features_name(universe),
    )
    platform = {(p, "platform") for p in t.profiles if p in PLATFORM_PROFILES}
    contenders = sorted(platform | {(p, e) for p in t.profiles if p not in PLATFORM_PROFILES for e in t.engines})

    @asset(
        name=tournament_key,
        group_name="reports",
        kinds={"numpy", "parquet"},
        **ctx.spec_defaults,
        metadata=table_metadata("tournament_returns"),
        backfill_policy=SINGLE_RUN,
        deps=[
            selection_key,
            returns_key,
            features_key,
            regime_name(universe),
            candidates_name(universe),
            AssetDep(tournament_key, partition_mapping=PREVIOUS_PARTITION),
        ],
        description=f"Tournament of sleeve `{sleeve}`: {len(contenders)} contenders (engines {t.engines} x "
        f"profiles {t.profiles}) optimised on the same winners and walked forward with the same "
        f"friction and wealth carry. Each partition's metadata is that period's scoreboard.",
    )
    def tournament(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        run = Run.of(context, ctx, lakehouse.get())
        dates = run.dates
        panel, u = universe_view(run, universe, window_start(dates[0], lookbacks.prices_days))
        sel = selections_by_date(run.read("selection", selection_key))
        feats = features_by_date(run.read("features", features_key))
        regimes = regime_by_date(run.read("regime", regime_name(universe)))
        previous = run.periods.previous(run.first_key)
        weights: dict[dt.date, pd.DataFrame] = {}
        state: dict[tuple[str, str], tuple[float, bool]] = {}
        if previous is not None:
            stored = run.lh.read_partition("tournament_weights", tournament_key, previous)
            if stored is not None:
                weights.update({d: g.to_pandas() for (d,), g in stored.group_by("rebalance_date")})
            ret = run.lh.read_partition("tournament_returns", tournament_key, previous)
            if ret is not None and ret.height:
                last = ret.to_pandas().groupby(["profile", "engine"]).tail(1)
                state = {(r.profile, r.engine): (float(r.wealth), bool(r.bankrupt)) for r in last.itertuples()}
        sign = -1.0 if cfg.direction == "short" else 1.0
        w_frames, r_frames = [], []
        for d in track(dates, tournament_key):
            kept = u.kept[d]
            X = dense_matrix(panel, u.rows[d][-lookbacks.optimisation_days :], kept)
            col = {s_: i for i, s_ in enumerate(kept)}
            view = feats.get(d)
            momentum = dict(zip(view.symbols, view.col("momentum"))) if view is not None else {}
            rows = []
            for profile, engine in contenders:
                symbols, ids, clusters = sleeve_pool(
                    profile, sel.get(d), set(kept), set(u.benchmarks[d]), cfg.logic, cfg.direction
                )
                raw = X[:, [col[s_] for s_ in symbols]]
                streams = -np.minimum(raw, 1.0) if cfg.direction == "short" else raw
                mom = np.array([momentum.get(s_, np.nan) for s_ in symbols], dtype=float)
                res = optimise_array(
                    streams,
                    ids,
                    profile,
                    engine="custom" if engine == "platform" else engine,
                    clusters=np.array(clusters),
                    config=cfg.risk,
                    regime=regimes[d],
                    **atom_scores(streams, mom, sign),
                )
                rows.append(
                    pd.DataFrame(
                        {
                            "engine": engine,
                            "profile": profile,
                            "atom_id": ids,
                            "symbol": symbols,
                            "weight": res.values,
                            "profile_used": res.profile_used,
                        }
                    )
                )
            frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["engine", "profile"])
            weights[d] = frame[frame["weight"] > 0]
            w_frames.append(weights[d].assign(rebalance_date=d))
            prev = run.periods.dates_before(d, 2)
            held = weights.get(prev[-1]) if prev else None
            if held is None:
                continue
            previous_held = weights.get(prev[0]) if len(prev) == 2 else None
            window = panel.between(prev[0] if previous_held is not None else prev[-1], d)
            raw = pd.DataFrame(
                panel.returns[window], index=pd.DatetimeIndex(panel.dates[window]), columns=panel.symbols
            )
            for profile, engine in contenders:  # every contender every date: an empty book is cash
                target = held[(held["profile"] == profile) & (held["engine"] == engine)]
                before = (
                    None
                    if previous_held is None
                    else previous_held[(previous_held["profile"] == profile) & (previous_held["engine"] == engine)]
                )
                wealth, bankrupt = state.get((profile, engine), (1.0, False))
                period = rebalance_period(
                    raw,
                    target,
                    before if before is not None and len(before) else None,
                    (prev[0] if previous_held is not None else None, prev[-1], d),
                    cfg.direction,
                    rate,
                    start_wealth=wealth,
                    bankrupt=bankrupt,
                )
                state[(profile, engine)] = (period.end_wealth, period.bankrupt)
                daily = period.daily.rename_axis("date").reset_index()
                r_frames.append(
                    daily.assign(engine=engine, profile=profile, date=daily["date"].dt.date, rebalance_date=d)
                )
        wparts = run.write("tournament_weights", tournament_key, pd.concat(w_frames, ignore_index=True), sleeve=sleeve)

        def scoreboard_facts(key: str, part: pl.DataFrame) -> dict:
            returns, w = part.to_pandas(), wparts[key].to_pandas()
            board = scoreboard(returns, w) if len(returns) else pd.DataFrame()
            md: dict[str, MetadataValue | str] = {
                "scoreboard": MetadataValue.md(
                    f"Scoreboard of {key}, best engine per profile in bold (highest "
                    f"Sharpe):\n\n" + scoreboard_markdown(board)
                )
            }
            best = board[board["best_engine"]] if len(board) else board
            if len(best):
                series = stitched(returns)
                curves = {f"{r.profile} ({r.engine})": series[(r.profile, r.engine)] for r in best.itertuples()}
                md["equity_curves"] = MetadataValue.md(
                    equity_curves_md(curves, f"{sleeve} {key}: best engine per profile")
                )
                md["drawdowns"] = MetadataValue.md(drawdowns_md(curves, f"{sleeve} {key}: drawdowns"))
                md["best_profile"] = str(best.sort_values("sharpe", ascending=False).iloc[0]["profile"])
            return md

        run.publish(
            "tournament_returns",
            tournament_key,
            pd.concat(r_frames, ignore_index=True) if r_frames else pd.DataFrame(),
            identity={"sleeve": sleeve},
            per_partition=scoreboard_facts,
            metadata={"contenders": len(contenders)},
        )
        md, _ = run._results[tournament_key]
        return MaterializeResult(metadata=md)

    return tournament
