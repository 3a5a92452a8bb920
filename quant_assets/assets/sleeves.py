"""Per-sleeve step: selection -> sleeve_weights_<sleeve>_<risk> -> sleeve_returns_<sleeve>_<risk>, every lens.

A sleeve is a universe + a strategy logic + a direction. Its atoms are (symbol, logic, direction);
optimisers see their synthetic-long streams (shorts: -min(r, 1)), and the signed physical weight is
kept next to the atom weight. All lenses of a sleeve share one step: they read the same selection,
returns and features, and share the covariance of the same winners.
"""

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from dagster import AssetCheckSpec, AssetDep, AssetExecutionContext, AssetSpec, MetadataValue

from quant_assets.allocation.optimise import FALLBACK_CHAINS, OptimisationResult, optimise_array
from quant_assets.allocation.pool import Selected, atom_scores, sleeve_pool
from quant_assets.assets.common import (
    PREVIOUS_PARTITION,
    GraphContext,
    LakehouseResource,
    Rows,
    Run,
    audit_complete,
    candidates_name,
    check_result,
    date_runs,
    features_name,
    performance_metadata,
    preview,
    regime_name,
    returns_name,
    selection_name,
    sleeve_returns_name,
    sleeve_weights_name,
    table_metadata,
)
from quant_assets.assets.funnel import features_by_date, regime_by_date
from quant_assets.assets.market_data import universe_view, window_start
from quant_assets.assets.parallel import Raised, enough, in_order
from quant_assets.assets.progress import track
from quant_assets.audit.checks import returns_problem, sleeve_weight_arrays_problem, synthetic_stream_problem
from quant_assets.audit.ledger import LedgerBatch, OptimisationLog, matrix_digest, selection_digest, weights_digest
from quant_assets.selection import hierarchy
from quant_assets.selection.market import dense_matrix
from quant_assets.simulation.simulate import BANKRUPTCY_FLOOR, Book

POOL_DESCRIPTION = {
    "market": "the universe's benchmarks (equal weight)",
    "benchmark": "its winners (equal weight: what optimisation adds)",
    "raw_pool_ew": "the whole raw pool, benchmarks excluded (equal weight: what selection adds)",
}


def selections_by_date(frame: pl.DataFrame) -> dict[dt.date, Selected]:
    """Stored selection rows -> each date's Selected, in rank order."""
    frame, runs = date_runs(frame.sort("rebalance_date", "rank", maintain_order=True))
    symbols, ids, clusters, selected = (frame[c].to_list() for c in ("symbol", "atom_id", "cluster", "selected"))
    return {d: Selected(symbols[a:b], ids[a:b], clusters[a:b], selected[a:b]) for d, a, b in runs}


def sleeve_step(ctx: GraphContext, sleeve: str):
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    universe = cfg.universe
    lookbacks = m.lookbacks
    rate = m.friction[m.universes[universe].asset_class].rate
    selection_key, returns_key, features_key = selection_name(sleeve), returns_name(universe), features_name(universe)
    regime_key, candidates_key = regime_name(universe), candidates_name(universe)
    lenses = list(cfg.risk_profiles)
    common = dict(ctx.spec_defaults, group_name="sleeves")
    specs, checks = [], []
    for risk in lenses:
        weights_key, sleeve_returns_key = sleeve_weights_name(sleeve, risk), sleeve_returns_name(sleeve, risk)
        specs += [
            AssetSpec(
                weights_key,
                metadata=table_metadata("sleeve_weights"),
                kinds={cfg.engine, "parquet"},
                deps=[selection_key, returns_key, features_key, regime_key, candidates_key],
                **common,
                description=f"`{risk}` weights of sleeve `{sleeve}` over {POOL_DESCRIPTION.get(risk, 'its winners')}, "
                f"optimised with {cfg.engine} on the last {lookbacks.optimisation_days} sessions; failures "
                f"fall back along a recorded chain ({' -> '.join(FALLBACK_CHAINS[risk])}). How every "
                f"date was produced (engine, variant, solver, covariance, chain with reasons) is in "
                f"the audit ledger.",
            ),
            AssetSpec(
                sleeve_returns_key,
                metadata=table_metadata("sleeve_returns"),
                kinds={"numpy", "parquet"},
                **common,
                deps=[weights_key, returns_key, AssetDep(sleeve_returns_key, partition_mapping=PREVIOUS_PARTITION)],
                description=f"Out-of-sample daily returns of sleeve `{sleeve}` under `{risk}`: the previous "
                f"rebalance's weights drifting over (previous date, this date], net of friction "
                f"({rate * 1e4:.0f} bps on traded notional). Wealth carries over from the previous "
                f"partition; below {BANKRUPTCY_FLOOR:.0%} of the start the book is liquidated to "
                f"cash and stays there.",
            ),
        ]
        checks += [
            AssetCheckSpec(
                "weights_valid",
                asset=weights_key,
                blocking=True,
                description="Finite, >= 0, summing to 1 (or cash); net signed by direction",
            ),
            AssetCheckSpec(
                "audit_complete",
                asset=weights_key,
                blocking=True,
                description="Every optimisation of the run is in the audit ledger, intent and outcome, "
                "linked into the chain",
            ),
            AssetCheckSpec(
                "directional_sign_test",
                asset=weights_key,
                blocking=True,
                description="Optimiser streams are r (long) or exactly -min(r, 1) (short)",
            ),
            AssetCheckSpec(
                "returns_in_bounds",
                asset=sleeve_returns_key,
                blocking=True,
                description="Daily net returns finite and within [-1, 10]",
            ),
        ]

    @ctx.step(f"sleeve_{sleeve}", specs, checks)
    def sleeve_lenses(context: AssetExecutionContext, lakehouse: LakehouseResource):
        run = Run.of(context, ctx, lakehouse.get())
        run.ledger.check_chain()  # a broken ledger stops the step before it writes anything
        run.resume()  # the weekly update: only the dates whose inputs changed
        dates = run.dates
        panel, u = universe_view(run, universe, window_start(dates[0], lookbacks.prices_days))
        wanted_w = [r for r in lenses if run.is_selected(sleeve_weights_name(sleeve, r))]
        wanted_r = [r for r in lenses if run.is_selected(sleeve_returns_name(sleeve, r))]
        weights: dict[str, dict[dt.date, Holding]] = {r: {} for r in lenses}
        if wanted_w:
            weights.update(_optimise(run, panel, u, wanted_w))
        inputs = {r: _holdings(run, r, weights[r] if r in wanted_w else None) for r in wanted_r}
        # each lens's wealth path is sequential in time, but the lenses are independent: on every core
        # when the run is long enough to pay for the workers
        spread = 2 if enough(len(run.dates)) else None
        with in_order(lambda r: _simulate(run, panel, *inputs[r]), wanted_r, min_items=spread) as paths:
            for risk, path in zip(wanted_r, paths):
                if isinstance(path, Raised):
                    raise path.error
                _publish_returns(run, risk, path)
        yield from run.results()

    def _optimise(run: Run, panel, u, wanted: list[str]) -> dict[str, dict[dt.date, Holding]]:
        dates = run.dates
        sel = selections_by_date(run.read("selection", selection_key))
        feats = features_by_date(run.read("features", features_key))
        regimes = regime_by_date(run.read("regime", regime_key))
        sign = -1.0 if cfg.direction == "short" else 1.0
        short = cfg.direction == "short"
        logs = {
            r: {
                k: OptimisationLog(
                    "sleeve_optimise",
                    sleeve_weights_name(sleeve, r),
                    k,
                    run.run_id,
                    {
                        "engine": cfg.engine,
                        "profile": r,
                        "chain": list(FALLBACK_CHAINS[r]),
                        "window_days": lookbacks.optimisation_days,
                        "config": cfg.risk.model_dump(mode="json"),
                    },
                )
                for k in run.keys
            }
            for r in wanted
        }
        batch = LedgerBatch(run.ledger, [log for by_key in logs.values() for log in by_key.values()])
        out: dict[str, dict[dt.date, Holding]] = {r: {} for r in wanted}
        weight_rows = {r: Rows() for r in wanted}
        failures: dict[str, dict[str, str]] = {r: {} for r in wanted}
        sign_failures: dict[str, dict[str, str]] = {r: {} for r in wanted}

        def decide(d: dt.date) -> list[tuple]:
            """The pure part of a date (numpy only, so it can run in a forked worker): each lens's
            pool, its input hashes and its optimisation (or what that raised), with what the step
            records of the result (`holding_facts`)."""
            kept = u.kept[d]
            rows = u.rows[d][-lookbacks.optimisation_days :]
            X = dense_matrix(panel, rows, kept)
            col = {s_: i for i, s_ in enumerate(kept)}
            view = feats.get(d)
            momentum = dict(zip(view.symbols, view.col("momentum"))) if view is not None else {}
            bench = [col[b] for b in u.benchmarks[d] if b in col] if cfg.risk.market_neutral else []
            benchmark = X[:, bench].mean(axis=1) if bench else None  # equal weight of the universe's benchmarks
            pools: dict[tuple, tuple] = {}  # profiles on the same atoms share streams, hashes and scores
            available, benchmarks, index = set(kept), set(u.benchmarks[d]), [panel.iso[i] for i in rows]
            lenses = []
            for risk in wanted:
                symbols, ids, clusters = sleeve_pool(risk, sel.get(d), available, benchmarks, cfg.logic, cfg.direction)
                key = tuple(ids)
                if key not in pools:
                    raw = X[:, [col[s_] for s_ in symbols]]
                    streams = -np.minimum(raw, 1.0) if short else raw
                    mom = np.array([momentum.get(s_, np.nan) for s_ in symbols], dtype=float)
                    pools[key] = (
                        streams,
                        synthetic_stream_problem(streams, raw, cfg.direction),
                        {
                            "streams": matrix_digest(index, ids, streams),
                            "selection": selection_digest(symbols, clusters),
                        },
                        atom_scores(streams, mom, sign),
                    )
                streams, issue, inputs, scores = pools[key]
                try:
                    result: OptimisationResult | Raised = optimise_array(
                        streams,
                        ids,
                        risk,
                        engine=cfg.engine,
                        clusters=np.array(clusters),
                        config=cfg.risk,
                        regime=regimes[d],
                        benchmark=benchmark,
                        **scores,
                    )
                except Exception as err:  # recorded in the ledger by the step, in date order
                    result = Raised(err)
                outcome: tuple | Raised | AfterRecording
                if isinstance(result, Raised):
                    outcome = result
                else:
                    try:
                        outcome = holding_facts(result, ids, symbols, clusters)
                    except Exception as err:  # raised by the step after the lens's ledger entry, in date order
                        outcome = AfterRecording(err)
                lenses.append((risk, issue, inputs, outcome))
            return lenses

        def holding_facts(result: OptimisationResult, ids: list[str], symbols: list[str], clusters: list[int]) -> tuple:
            """What a lens holds after its optimisation (atoms with weight > 0) and everything the
            step records of it that is a function of the result alone: the weights hash, the status,
            how the weights were produced and the weights check (computed with the optimisation)."""
            w = result.values
            keep = w > 0 if result.profile_used != "none" else np.zeros(len(w), dtype=bool)
            h = Holding(
                [i for i, k in zip(ids, keep) if k],
                [s_ for s_, k in zip(symbols, keep) if k],
                w[keep],
                [c for c, k in zip(clusters, keep) if k],
                result.engine,
                result.profile_used,
            )
            status = "no_assets" if result.profile_used == "none" else "fallback" if result.fallback_used else "success"
            n = len(h.ids)
            problem = sleeve_weight_arrays_problem(h.weights, sign * h.weights, [cfg.direction] * n, h.symbols)
            return h, h.hash(), status, _provenance(result), problem

        def record(d, risk, issue, inputs, outcome) -> None:
            """The sequential part of a date and lens: ledger entry, holding, rows, the checks' failures."""
            if issue:
                sign_failures[risk][d.isoformat()] = issue
            log = logs[risk][run.key_of(d)]
            with batch.recording(log, d, inputs):
                if isinstance(outcome, Raised):
                    raise outcome.error
            if isinstance(outcome, AfterRecording):
                raise outcome.error
            h, digest, status, provenance, problem = outcome
            out[risk][d] = h
            log.add(d, inputs, status, digest, regime=regimes[d], **provenance)
            n = len(h.ids)
            weight_rows[risk].add(
                rebalance_date=[d] * n,
                atom_id=h.ids,
                symbol=h.symbols,
                direction=cfg.direction.upper(),
                weight=h.weights.tolist(),
                net_weight=(sign * h.weights).tolist(),
                cluster=h.clusters,
                engine=h.engine,
                profile_used=h.profile_used,
            )
            if problem:
                failures[risk][d.isoformat()] = problem

        with in_order(decide, dates, preload=[hierarchy.preload]) as decisions:
            for d, decided in zip(track(dates, f"sleeve_{sleeve}"), decisions):
                if isinstance(decided, Raised):
                    raise decided.error
                for risk, issue, inputs, outcome in decided:
                    record(d, risk, issue, inputs, outcome)
        ledger_check, n_records = batch.commit()
        ledger_path = MetadataValue.path(str(run.ledger.path))
        for risk in wanted:
            weights_key = sleeve_weights_name(sleeve, risk)

            def fallbacks(k: str, p: pl.DataFrame, risk: str = risk) -> dict:
                fb = [e for e in logs[risk][k].entries if e["status"] != "success"]
                return {
                    "preview": preview(p),
                    "fallbacks": len(fb),
                    "fallback_dates": MetadataValue.json({e["rebalance_date"]: e["chain"] for e in fb[:20]}),
                }

            run.publish(
                "sleeve_weights",
                weights_key,
                weight_rows[risk].frame(),
                identity={"sleeve": sleeve, "risk": risk},
                per_partition=fallbacks,
                checks=[
                    check_result("weights_valid", weights_key, failures[risk], len(dates)),
                    check_result(
                        "directional_sign_test", weights_key, sign_failures[risk], len(dates), direction=cfg.direction
                    ),
                    audit_complete(weights_key, ledger_check, n_records, len(dates), ledger=ledger_path),
                ],
                metadata={"engine": cfg.engine, "requested_profile": risk},
            )
        return out

    def _holdings(run: Run, risk: str, computed: dict[dt.date, Holding] | None) -> tuple:
        """What a lens's simulation starts from (read in the step): its holdings by date, the last
        stored period's included (the run's first period trades from them), and the wealth and
        bankrupt flag at the end of the stored history (None: never materialised). Resuming, the
        stored history ends at the last date kept, and the weights of the dates kept are read back."""
        weights_key, sleeve_returns_key = sleeve_weights_name(sleeve, risk), sleeve_returns_name(sleeve, risk)
        previous = run.periods.previous(run.first_key)
        weights: dict[dt.date, Holding] = {}
        if previous is not None:
            stored = run.lh.read_partition("sleeve_weights", weights_key, previous)
            if stored is not None:
                weights.update(holdings_by_date(stored))
        if computed is None or run.start is not None:  # this period's weights as stored (all of them)
            weights.update(holdings_by_date(run.read("sleeve_weights", weights_key)))
        else:
            weights.update(computed)
        state = _stored_state(run, sleeve_returns_key, previous) if previous else (1.0, False)
        if run.start is not None:
            kept = run.lh.read_partition("sleeve_returns", sleeve_returns_key, run.first_key)
            assert kept is not None  # resuming means every output of the period is stored
            state = _wealth_at_end(kept.filter(pl.col("rebalance_date") < run.start)) or state
        return weights, state

    def _simulate(run: Run, panel, weights: dict[dt.date, Holding], stored: tuple[float, bool] | None) -> ReturnPath:
        """A lens's daily net returns over the run's dates: each period earns on the weights
        decided on the previous rebalance date, wealth carried forward (numpy and Python only, so a
        forked worker can run it)."""
        book = Book(cfg.direction, rate)
        state, restarted = None, False
        return_rows = Rows()
        failures, skipped = {}, []
        for d in run.dates:
            # held: decided on the previous rebalance date, earns (decided_on, d]; before: decided the
            # date before that, drifted to decided_on, where the book trades from it into `held`
            prev = run.periods.dates_before(d, 2)
            held = weights.get(prev[-1]) if prev else None
            if state is None:  # first date of this run: pick up where the stored history left off
                state = stored
                if state is None:
                    state, restarted = (1.0, False), held is not None
            if held is None:
                skipped.append(d.isoformat())
                continue
            decided_on = prev[-1]
            before = weights.get(prev[0]) if len(prev) == 2 else None
            rows = panel.between(prev[0] if before is not None else decided_on, d)
            symbols = sorted(set(held.symbols) | (set(before.symbols) if before is not None else set()))
            returns = (
                panel.returns[rows][:, panel.columns(symbols)] if symbols else np.zeros((rows.stop - rows.start, 0))
            )
            days = panel.dates[rows]
            split = 0 if before is None else int(np.searchsorted(days, np.datetime64(decided_on, "D"), side="right"))
            p = book.period(
                returns,
                symbols,
                (held.ids, held.symbols, held.weights),
                (before.ids, before.symbols, before.weights) if before is not None else None,
                split,
                state[0],
                state[1],
            )
            state = (p.end_wealth, p.bankrupt)
            earning = days[split:]
            n = len(earning)
            return_rows.add(
                rebalance_date=[d] * n,
                date=earning.tolist(),
                gross_return=p.gross.tolist(),
                cost=p.cost.tolist(),
                net_return=p.net.tolist(),
                turnover=p.turnover.tolist(),
                wealth=p.wealth.tolist(),
                bankrupt=p.bankrupt_flags.tolist(),
                weights_date=[decided_on] * n,
            )
            problem = returns_problem(p.net, "daily net return") if n else None
            if problem:
                failures[d.isoformat()] = problem
        return ReturnPath(return_rows, failures, skipped, state, restarted)

    def _publish_returns(run: Run, risk: str, path: ReturnPath) -> None:
        sleeve_returns_key = sleeve_returns_name(sleeve, risk)

        def performance(k: str, part: pl.DataFrame) -> dict:
            turnover = part.filter(pl.col("turnover") > 0)["turnover"].to_numpy() if part.height else None
            return {
                **performance_metadata(part["date"].to_numpy(), part["net_return"].to_numpy(), turnover),
                "wealth_end": float(part["wealth"][-1]) if part.height else float("nan"),
                "dates_without_previous_weights": sum(
                    1 for s_ in path.skipped if run.key_of(dt.date.fromisoformat(s_)) == k
                ),
            }

        run.publish(
            "sleeve_returns",
            sleeve_returns_key,
            path.rows.frame(),
            identity={"sleeve": sleeve, "risk": risk},
            per_partition=performance,
            checks=[check_result("returns_in_bounds", sleeve_returns_key, path.failures, len(run.dates))],
            metadata={
                "wealth_restarted_at_1": path.restarted,
                "bankrupt": bool(path.state[1]) if path.state else False,
            },
        )

    return sleeve_lenses


@dataclass
class AfterRecording:
    """What a lens's bookkeeping raised after its optimisation succeeded: the step raises it after
    the lens's ledger entry, where the error would have surfaced had the step computed it."""

    error: Exception


@dataclass
class ReturnPath:
    """A lens's simulated period returns over a run: the rows, the dates whose returns failed the
    bounds check, the dates without previous weights, the final (wealth, bankrupt) and whether
    wealth restarted at 1 (no stored history to continue)."""

    rows: Rows
    failures: dict[str, str]
    skipped: list[str]
    state: tuple[float, bool] | None
    restarted: bool


@dataclass
class Holding:
    """One date's weights of a sleeve lens (atoms with weight > 0)."""

    ids: list[str]
    symbols: list[str]
    weights: np.ndarray
    clusters: list[int]
    engine: str = ""
    profile_used: str = ""

    def hash(self) -> str:
        """The output hash the ledger records (as `weights_hash` computes it from a stored partition)."""
        return weights_digest(self.ids, self.weights)


def holdings_by_date(frame: pl.DataFrame) -> dict[dt.date, Holding]:
    frame, runs = date_runs(frame)
    ids, symbols, clusters, engines, profiles = (
        frame[c].to_list() for c in ("atom_id", "symbol", "cluster", "engine", "profile_used")
    )
    weights = frame["weight"].to_numpy()
    return {
        d: Holding(ids[a:b], symbols[a:b], weights[a:b], clusters[a:b], engines[a], profiles[a]) for d, a, b in runs
    }


def _stored_state(run: Run, asset: str, key: str) -> tuple[float, bool] | None:
    """(wealth, bankrupt) at the end of a stored partition; None when it was never materialised."""
    f = run.lh.read_partition("sleeve_returns", asset, key)
    if f is None:
        return None
    return _wealth_at_end(f) or (1.0, False)


def _wealth_at_end(f: pl.DataFrame) -> tuple[float, bool] | None:
    """(wealth, bankrupt) after the last return row with a wealth; None when there is none."""
    f = f.filter(pl.col("wealth").is_not_null())
    return None if f.is_empty() else (float(f["wealth"][-1]), bool(f["bankrupt"][-1]))


def _provenance(result) -> dict:
    """What varies per date in how the weights were produced (the static part is in the intent)."""
    p = result.provenance
    return {
        "profile_used": result.profile_used,
        "engine": result.engine,
        "chain": result.chain_text(),
        "variant": p["variant"],
        "solver": p["solver"],
        "cluster_cap": p["cluster_cap"],
        "dropped": p["dropped"],
        "diagnostics": p["diagnostics"],
    }
