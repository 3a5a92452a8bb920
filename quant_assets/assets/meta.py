"""Per-meta step: the recursive meta layer, every risk lens of a meta in one step.

For a meta M and a risk lens r (the sleeve risk profile whose streams feed the tree):
  meta_returns_M_r            each child's daily stream, side by side (stored once per day)
  meta_weights_M_r            allocation across children on the trailing window of those streams
  meta_cluster_tree_M_r       the uncollapsed tree at M's level
  meta_portfolio_returns_M_r  M's own out-of-sample stream: what a parent meta sees of M
  flattened_weights_M_r       physical symbols only, signed, every path recorded
  meta_report_M_r             markdown for people (the last rebalance date of each partition)
A child meta contributes its meta_portfolio_returns / flattened contributions, never a plain
mean of its sleeves, so nesting to any depth is the same code path.
"""

import datetime as dt
import itertools
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MetadataValue,
    TableColumnDep,
    TableColumnLineage,
)

from quant_assets.allocation.optimise import FALLBACK_CHAINS
from quant_assets.assets.common import (
    GraphContext,
    LakehouseResource,
    Rows,
    Run,
    audit_complete,
    candidates_name,
    check_result,
    date_runs,
    flattened_name,
    meta_portfolio_returns_name,
    meta_returns_name,
    meta_tree_name,
    meta_weights_name,
    performance_metadata,
    preview,
    report_name,
    sleeve_returns_name,
    sleeve_weights_name,
    table_metadata,
)
from quant_assets.assets.parallel import Raised, in_order
from quant_assets.assets.progress import track
from quant_assets.audit.checks import flattened_problem, meta_weight_arrays_problem, returns_problem, sign_problem
from quant_assets.audit.ledger import LedgerBatch, OptimisationLog, iso_days, matrix_digest, weights_digest
from quant_assets.config.manifest import ChildRef
from quant_assets.data.calendars import calendar_days_covering
from quant_assets.meta.aggregate import (
    CONTRIBUTION_COLUMNS,
    NET_COLUMNS,
    AlignedStreams,
    AllocationOutcome,
    ChildPaths,
    ChildStream,
    MetaAllocation,
    SuccessHistory,
    allocate_array,
    cluster_labels,
    flatten_paths,
    health_vetoes_array,
    outer_matrix,
    tree_rows,
    window_matrix,
)
from quant_assets.meta.report import REPORT_TABLES, render_tree, report_at, report_tables, report_window_keys
from quant_assets.selection import hierarchy
from quant_assets.simulation.simulate import drift_array

TREE_THRESHOLD = 0.5


def child_stream_asset(child: ChildRef, risk: str) -> tuple[str, str, str]:
    """(table, asset, value column) of the stream a child contributes to its parent."""
    if child.kind == "sleeve":
        return "sleeve_returns", sleeve_returns_name(child.name, risk), "net_return"
    return "meta_portfolio_returns", meta_portfolio_returns_name(child.name, risk), "ret"


def child_weights_asset(child: ChildRef, risk: str) -> tuple[str, str]:
    """(table, asset) of what a child holds: a sleeve's weights or a child meta's flattened paths."""
    if child.kind == "sleeve":
        return "sleeve_weights", sleeve_weights_name(child.name, risk)
    return "flattened_contributions", flattened_name(child.name, risk)


def optimisation_history(frame: pl.DataFrame, child: ChildRef, risk: str) -> list[tuple[dt.date, bool]]:
    """(date, succeeded) for a child's optimisations: a sleeve succeeded when its requested profile
    produced the weights; a meta when its allocation did not fall back. Cash sleeves and metas
    waiting for history are not judged."""
    if frame.height == 0:
        return []
    column = "profile_used" if child.kind == "sleeve" else "outcome"
    if child.kind == "meta":  # partitions written before the `outcome` column: read it off the status text
        legacy = pl.col("status").str.extract(r"^(optimised|fallback|equal_weight)")
        frame = frame.with_columns(pl.coalesce(pl.col("outcome"), legacy).alias("outcome"))
    per_date = frame.group_by("rebalance_date").agg(pl.col(column).first()).sort("rebalance_date")
    pairs = zip(per_date["rebalance_date"].to_list(), per_date[column].to_list())
    if child.kind == "sleeve":
        return [(d, used == risk) for d, used in pairs]
    judged = (AllocationOutcome.OPTIMISED.value, AllocationOutcome.FALLBACK.value)
    return [(d, o == AllocationOutcome.OPTIMISED.value) for d, o in pairs if o in judged]


@dataclass
class Allocation:
    """A meta lens on one date: its weights (children in manifest order), its stored row and the
    children's correlation clusters in the window it was optimised on."""

    weights: np.ndarray
    frame: dict | pl.DataFrame | None
    labels: np.ndarray | None = None


def allocations_by_date(frame: pl.DataFrame) -> dict[dt.date, Allocation]:
    return {
        g["rebalance_date"][0]: Allocation(g["weight"].to_numpy(), g)
        for g in frame.partition_by("rebalance_date", maintain_order=True)
    }


def child_stream(frame: pl.DataFrame, value: str) -> ChildStream:
    """A stored stream (rebalance_date, date, value) as a ChildStream."""
    if frame.height == 0:
        return ChildStream.empty()
    return ChildStream(
        frame["rebalance_date"].to_numpy().astype("datetime64[D]"),
        frame["date"].to_numpy().astype("datetime64[D]"),
        frame[value].to_numpy().astype(float),
    )


def py_dates(frame: pl.DataFrame) -> pd.DataFrame:
    """A polars frame in pandas with Date columns as datetime.date (comparable with dates)."""
    out = frame.to_pandas()
    for c, t in frame.schema.items():
        if t == pl.Date:
            out[c] = frame[c].to_list()
    return out


def last_date(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of a partition's last rebalance date."""
    return frame.filter(pl.col("rebalance_date") == frame["rebalance_date"].max())


def join_metadata(infos: list[dict], calendars: dict[str, list[str]]) -> dict:
    """What the children's join dropped over a partition's dates, and why: the worst share, and the
    last date's dropped days with the children that lacked them and their trading calendars (a
    child on an exchange calendar has no weekend days next to a 24/7 one). The other children's
    returns on those days are compounded into the next kept day (`join_window`), not lost."""
    if not infos:
        return {"join_lost_share_max": 0.0}
    last = infos[-1]
    why = "; ".join(
        f"{c} has no return on {n} of the {last['union_days']} days (trades on {', '.join(calendars.get(c, ['?']))})"
        for c, n in sorted(last["missing_by_child"].items())
    )
    if why:
        why += "; the others' returns on those days are compounded into the next common day"
    return {
        "join_lost_share_max": round(max(i["lost_share"] for i in infos), 4),
        "join_lost_days_last_date": last["lost_days"],
        "join_lost_why": why or "no day lost",
    }


LensRun = Generator[tuple, Iterator, None]  # a lens's computation: pauses with its request, resumed with decisions


@dataclass
class MetaLens:
    """One risk lens of a meta: its asset specs and checks, and `compute(run)`, which computes the
    lens's selected keys of a run and describes them on the run. `compute` is a generator: when the
    lens allocates, it pauses once with its request `(decide, dates)`, the pure per-date work, and
    resumes with `decide`'s results in date order (`Raised` for a date that raised); see `meta_step`."""

    specs: list[AssetSpec]
    checks: list[AssetCheckSpec]
    compute: Callable[[Run], LensRun]

    @property
    def keys(self) -> list[str]:
        return [spec.key.to_user_string() for spec in self.specs]


def meta_step(ctx: GraphContext, meta: str):
    """One step per meta: every lens of the meta (they read the same children's tables and are
    always materialised together in a backfill), subsettable to any of their keys. One step instead
    of one per lens saves each lens the step's fixed cost (Dagster's step events and input-version
    lookups, the overlapping-run guard, the ledger's chain check): most of a weekly update."""
    lenses = [meta_lens(ctx, meta, risk) for risk in ctx.manifest.meta_risks(meta)]

    @ctx.step(f"meta_{meta}", [s for lens in lenses for s in lens.specs], [c for lens in lenses for c in lens.checks])
    def meta_lenses(context: AssetExecutionContext, lakehouse: LakehouseResource):
        run = Run.of(context, ctx, lakehouse.get())
        run.ledger.check_chain()  # a broken ledger stops the step before it writes anything
        run.resume()  # the weekly update: only the dates whose inputs changed
        # Every lens reads its inputs and states its per-date work first; then one worker computes
        # the dates of all lenses, lens after lens, while the step records each lens in turn,
        # finishes it (flattening, portfolio returns, reports, writes) and hands its keys to Dagster.
        # The step's sequential part is the longer one here, so it keeps a core to itself: one
        # worker working ahead beats two that wait for the step after each lens, forked again for
        # each lens (see `docs/architecture.md`, Execution).
        started: list[tuple[MetaLens, LensRun, tuple | None]] = []
        try:
            for lens in lenses:
                if run.selected & set(lens.keys):
                    lens_run = lens.compute(run)
                    started.append((lens, lens_run, next(lens_run, None)))
            work = {i: request[0] for i, (_, _, request) in enumerate(started) if request}
            items = [(i, d) for i, (_, _, request) in enumerate(started) if request for d in request[1]]

            def decide(item: tuple[int, dt.date]):
                lens_index, d = item
                return work[lens_index](d)

            # the step computes half of the first lens's dates itself while the worker starts on the rest
            head = len(started[0][2][1]) // 2 if started and started[0][2] else 0
            with in_order(decide, items, preload=[hierarchy.preload], max_workers=1, head=head) as decisions:
                for lens, lens_run, request in started:
                    if request is not None:
                        try:
                            lens_run.send(itertools.islice(decisions, len(request[1])))
                        except StopIteration:
                            pass
                        else:
                            raise RuntimeError(f"meta_{meta}: lens {lens.keys[0]} paused twice")
                    yield from run.results(lens.keys)
        finally:
            for _, lens_run, _ in started:
                lens_run.close()  # a lens that failed or was never resumed
        yield from run.results()

    return meta_lenses


def meta_lens(ctx: GraphContext, meta: str, risk: str) -> MetaLens:
    m = ctx.manifest
    cfg = m.metas[meta]
    lookbacks = m.lookbacks
    children = cfg.children
    names = [c.name for c in children]
    span = dt.timedelta(days=calendar_days_covering(lookbacks.meta_window_days))
    meta_returns_key, meta_weights_key, tree_key = (
        meta_returns_name(meta, risk),
        meta_weights_name(meta, risk),
        meta_tree_name(meta, risk),
    )
    portfolio_returns_key, flattened_key, report_key = (
        meta_portfolio_returns_name(meta, risk),
        flattened_name(meta, risk),
        report_name(meta, risk),
    )
    stream_assets = [child_stream_asset(c, risk)[1] for c in children]
    weight_windows = [
        sleeve_weights_name(c.name, risk) if c.kind == "sleeve" else meta_weights_name(c.name, risk) for c in children
    ]  # read over the trailing window (health gate)
    child_holdings = [
        sleeve_weights_name(c.name, risk) if c.kind == "sleeve" else flattened_name(c.name, risk) for c in children
    ]
    universes = sorted({m.sleeves[s].universe for s in m.descendant_sleeves(meta)})
    directions: dict[str, str] = {s: m.sleeves[s].direction for s in m.descendant_sleeves(meta)}
    chain = FALLBACK_CHAINS[cfg.allocation.profile]
    sources = [TableColumnDep(asset_key=AssetKey(meta_weights_key), column_name="weight")] + [
        TableColumnDep(asset_key=AssetKey(a), column_name="net_weight" if a.startswith("flattened") else "weight")
        for a in child_holdings
    ]
    column_lineage = TableColumnLineage(
        deps_by_column={
            "net_weight": sources,
            "long_weight": sources,
            "short_weight": sources,
            "symbol": [TableColumnDep(asset_key=AssetKey(a), column_name="symbol") for a in child_holdings],
        }
    )
    common = ctx.spec_defaults
    specs = [
        AssetSpec(
            meta_returns_key,
            metadata=table_metadata("meta_returns"),
            group_name="meta",
            kinds={"pandas", "parquet"},
            deps=stream_assets,
            **common,
            description=f"Daily out-of-sample streams of `{meta}`'s children ({', '.join(map(str, children))}) "
            f"under the `{risk}` lens, side by side, stored once per day. The allocation on D uses "
            f"the trailing {lookbacks.meta_window_days} sessions of them, inner-joined on dates.",
        ),
        AssetSpec(
            meta_weights_key,
            metadata=table_metadata("meta_weights"),
            group_name="meta",
            kinds={cfg.allocation.engine, "parquet"},
            deps=[meta_returns_key, *weight_windows],
            **common,
            description=f"Allocation of `{meta}` across its children under `{risk}`: "
            f"{cfg.allocation.engine}/{cfg.allocation.profile}, fallback chain {' -> '.join(chain)}, "
            f"projected to [{cfg.min_weight}, {cfg.max_weight}]. Children below "
            f"{cfg.min_child_success_share:.0%} successful optimisations over the window, or with a "
            f"flat stream, are vetoed for the date. Equal weight until {lookbacks.meta_min_history_days} "
            f"sessions of history exist.",
        ),
        AssetSpec(
            tree_key,
            metadata=table_metadata("meta_cluster_tree"),
            group_name="meta",
            kinds={"scipy", "parquet"},
            deps=[meta_weights_key, meta_returns_key]
            + [meta_tree_name(c.name, risk) for c in children if c.kind == "meta"],
            **common,
            description=f"The uncollapsed tree at `{meta}`'s level under `{risk}`: correlation clusters of "
            f"children, cluster and intra-cluster weights, child metas' trees by reference.",
        ),
        AssetSpec(
            portfolio_returns_key,
            metadata=table_metadata("meta_portfolio_returns"),
            group_name="meta",
            kinds={"numpy", "parquet"},
            deps=[meta_weights_key, *stream_assets],
            **common,
            description=f"`{meta}`'s own out-of-sample daily returns under `{risk}`: the previous rebalance's "
            f"meta weights drifting over the children's realised streams. This is what a parent "
            f"meta sees.",
        ),
        AssetSpec(
            flattened_key,
            group_name="meta",
            kinds={"pandas", "parquet"},
            deps=[meta_weights_key, *child_holdings, *[candidates_name(u) for u in universes]],
            **common,
            metadata={**table_metadata("flattened_weights"), "dagster/column_lineage": column_lineage},
            description=f"`{meta}` under `{risk}` collapsed to physical symbols: signed net weight per symbol, "
            f"long and short gross apart, and every root-to-atom path in `flattened_contributions`.",
        ),
        AssetSpec(
            report_key,
            metadata=table_metadata("meta_report"),
            group_name="reports",
            kinds={"markdown", "parquet"},
            deps=[meta_returns_key, tree_key, flattened_key, meta_weights_key, portfolio_returns_key],
            **common,
            description=f"Markdown report of `{meta}` under `{risk}` as of each partition's last rebalance date: "
            f"allocation with effective N and health, allocation over time, children's "
            f"correlations, trailing out-of-sample performance and equity curve, fallback and veto "
            f"events, top physical holdings with contributors, cluster tree. Any other date: "
            f"`quant-assets report {meta} {risk} DATE`.",
        ),
    ]
    checks = [
        AssetCheckSpec(
            "weights_within_bounds",
            asset=meta_weights_key,
            blocking=True,
            description=f"Finite, summing to 1, within [{cfg.min_weight}, {cfg.max_weight}], vetoed children at 0",
        ),
        AssetCheckSpec(
            "audit_complete",
            asset=meta_weights_key,
            blocking=True,
            description="Every optimisation of the run is in the audit ledger, intent and outcome, linked "
            "into the chain",
        ),
        AssetCheckSpec(
            "returns_in_bounds",
            asset=portfolio_returns_key,
            blocking=True,
            description="Daily returns finite and within [-1, 10]",
        ),
        AssetCheckSpec(
            "physical_and_conserved",
            asset=flattened_key,
            blocking=True,
            description="Physical symbols listed on the date; net = long - short; paths conserve: sum = "
            "net, gross = net gross + netted away",
        ),
        AssetCheckSpec(
            "directional_sign_test",
            asset=flattened_key,
            blocking=True,
            description="Every path keeps its sleeve's direction; shorts never go long",
        ),
    ]

    def compute(run: Run) -> LensRun:
        dates = run.dates
        earlier = run.earlier_keys(dates[0] - span)
        previous_key = run.periods.previous(run.first_key)
        # children's streams over the window (earlier periods when stored: a backtest may start later)
        streams = {}
        for c in children:
            table, name, col = child_stream_asset(c, risk)
            frame = pl.concat(
                [run.read(table, name, earlier, required=False), run.read(table, name)], how="vertical_relaxed"
            )
            streams[c.name] = child_stream(frame, col)
        aligned = AlignedStreams.of(streams, names)  # one day axis for every window of the step
        m = ctx.manifest
        child_calendars = {
            c.name: sorted(
                {
                    m.universes[m.sleeves[s].universe].trading_calendar.name
                    for s in ([c.name] if c.kind == "sleeve" else m.descendant_sleeves(c.name))
                }
            )
            for c in children
        }
        results = None
        if {meta_weights_key, tree_key, flattened_key, report_key} & run.selected:
            decide, record_all = _allocations(run, streams, aligned, child_calendars)
            decisions = yield decide, dates  # the step computes them, in date order
            # published after the pause, so the step forks its worker sooner, and before the weights:
            # Dagster takes a step's keys in topological order, the order they are published in
            _meta_returns(run, streams)
            results = record_all(decisions)
        else:
            _meta_returns(run, streams)
        if run.is_selected(portfolio_returns_key):
            _portfolio_returns(run, streams, aligned, previous_key)
        if {flattened_key, report_key} & run.selected:
            assert results is not None  # computed above whenever flattened_key or report_key is selected
            _flatten(run, results)
        if run.is_selected(report_key):
            assert results is not None  # computed above whenever report_key is selected
            _reports(run, results, streams)

    def _meta_returns(run: Run, streams: dict[str, ChildStream]) -> None:
        """The children's streams side by side, once per day."""
        dates = run.dates
        if run.is_selected(meta_returns_key):
            rows = Rows()
            for child, st in streams.items():
                sel = st.rows(dates[0] - dt.timedelta(days=1), dates[-1])
                rows.add(
                    rebalance_date=st.periods[sel].tolist(),
                    date=st.dates[sel].tolist(),
                    child=[child] * (sel.stop - sel.start),
                    ret=st.values[sel].tolist(),
                )
            run.publish(
                "meta_returns",
                meta_returns_key,
                rows.frame(),
                identity={"meta": meta, "risk": risk},
                per_partition=lambda k, p: {"preview": preview(p)},
            )

    def _allocations(
        run: Run, streams: dict[str, ChildStream], aligned: AlignedStreams | None, child_calendars: dict
    ) -> tuple[Callable[[dt.date], tuple], Callable[[Iterator], dict[dt.date, Allocation]]]:
        """The lens's allocations as two functions: `decide(d)`, the pure work of a date (for a
        worker), and `record_all(decisions)`, which records `decide`'s results of every date, in date
        order, and publishes the weights and the cluster tree; it returns each date's allocation."""
        dates = run.dates
        earlier = run.earlier_keys(dates[0] - span)
        histories = {}
        for c, name in zip(children, weight_windows):
            table = "sleeve_weights" if c.kind == "sleeve" else "meta_weights"
            frame = pl.concat(
                [run.read(table, name, earlier, required=False), run.read(table, name)], how="vertical_relaxed"
            )
            histories[c.name] = SuccessHistory(optimisation_history(frame, c, risk))
        compute_w = run.is_selected(meta_weights_key)
        stored = None if compute_w else allocations_by_date(run.read("meta_weights", meta_weights_key))
        logs = {
            k: OptimisationLog(
                "meta_optimise",
                meta_weights_key,
                k,
                run.run_id,
                {
                    "engine": cfg.allocation.engine,
                    "profile": cfg.allocation.profile,
                    "chain": list(chain),
                    "bounds": [cfg.min_weight, cfg.max_weight],
                    "window_days": lookbacks.meta_window_days,
                },
            )
            for k in run.keys
        }
        batch = LedgerBatch(run.ledger, logs.values())
        out: dict[dt.date, Allocation] = {}
        weight_rows = Rows()
        failures, lost = {}, {}

        def decide(d: dt.date) -> tuple:
            """The pure part of a date (numpy only, so it can run in a forked worker): the window of the
            children's streams, their clusters, the health gate and the allocation (or what it raised),
            with the weights' hash and check."""
            days, values, info = (
                aligned.window(d - span, d, lookbacks.meta_window_days)
                if aligned is not None
                else window_matrix(streams, names, d - span, d, lookbacks.meta_window_days)
            )
            labels = cluster_labels(values, TREE_THRESHOLD)
            if not compute_w:
                return info, labels, None
            shares = {c: histories[c].share(d - span, d) for c in names}
            vetoed = health_vetoes_array(values, names, shares, cfg.min_child_success_share)
            inputs = {
                "meta_returns": matrix_digest(
                    aligned.iso(days) if aligned is not None else iso_days(days), names, values
                )
            }
            try:
                alloc: MetaAllocation | Raised = allocate_array(
                    values,
                    names,
                    profile=cfg.allocation.profile,
                    engine=cfg.allocation.engine,
                    chain=chain,
                    lower=cfg.min_weight,
                    upper=cfg.max_weight,
                    min_history=lookbacks.meta_min_history_days,
                    vetoed=vetoed,
                )
            except Exception as err:  # recorded in the ledger by the step, in date order
                alloc = Raised(err)
            if isinstance(alloc, Raised):
                return info, labels, (shares, vetoed, inputs, alloc, "", None)
            # the weights' hash and check are functions of the allocation alone: computed here too
            digest = weights_digest(names, alloc.values)
            problem = meta_weight_arrays_problem(alloc.values, names, cfg.min_weight, cfg.max_weight, set(vetoed))
            return info, labels, (shares, vetoed, inputs, alloc, digest, problem)

        def record(
            d: dt.date,
            labels: np.ndarray,
            shares: dict,
            vetoed: dict,
            inputs: dict,
            alloc,
            digest: str,
            problem: str | None,
        ) -> None:
            """The sequential part of a date: ledger entry, rows, checks."""
            with batch.recording(logs[run.key_of(d)], d, inputs):
                if isinstance(alloc, Raised):
                    raise alloc.error
            w = alloc.values
            kind = alloc.outcome.value
            logs[run.key_of(d)].add(
                d,
                inputs,
                {"optimised": "success"}.get(kind, kind),
                digest,
                status_text=alloc.status,
                engine=alloc.engine,
                profile_used=alloc.profile_used,
                vetoed=vetoed,
            )
            row = {
                "rebalance_date": [d] * len(names),
                "child": names,
                "child_kind": [c.kind for c in children],
                "weight": w.tolist(),
                "raw_weight": alloc.raw_values.tolist(),
                "cluster": labels.tolist(),
                "engine": [alloc.engine] * len(names),
                "profile_used": [alloc.profile_used] * len(names),
                "outcome": [kind] * len(names),
                "status": [alloc.status] * len(names),
                "vetoed": [vetoed.get(c, "") for c in names],
                "success_share": [shares[c] for c in names],
            }
            weight_rows.add(**row)
            out[d] = Allocation(w, row, labels)
            if problem:
                failures[d.isoformat()] = problem

        def record_all(decisions: Iterator) -> dict[dt.date, Allocation]:
            for d, decided in zip(track(dates, f"meta_{meta}_{risk}"), decisions):
                if isinstance(decided, Raised):
                    raise decided.error
                info, labels, allocated = decided
                lost[d] = info
                if allocated is None:  # weights read from storage
                    assert stored is not None  # read from storage above whenever weights are not computed
                    out[d] = Allocation(stored[d].weights, stored[d].frame, labels)
                    continue
                record(d, labels, *allocated)
            if compute_w:
                ledger_check, n_records = batch.commit()

                def weights_facts(k: str, p: pl.DataFrame) -> dict:
                    by_date = p.group_by("rebalance_date", maintain_order=True).agg(pl.col("status", "outcome").first())
                    statuses, outcomes = by_date["status"].to_list(), by_date["outcome"].to_list()
                    return {
                        "preview": preview(p),
                        "status_last_date": statuses[-1] if statuses else "",
                        "dates_equal_weight": outcomes.count(AllocationOutcome.EQUAL_WEIGHT.value),
                        "dates_with_fallback": outcomes.count(AllocationOutcome.FALLBACK.value),
                        "child_vetoes": int((p["vetoed"] != "").sum()),
                        **join_metadata([lost[d_] for d_ in run.periods.dates(k) if d_ in lost], child_calendars),
                    }

                run.publish(
                    "meta_weights",
                    meta_weights_key,
                    weight_rows.frame(),
                    identity={"meta": meta, "risk": risk},
                    per_partition=weights_facts,
                    checks=[
                        check_result(
                            "weights_within_bounds",
                            meta_weights_key,
                            failures,
                            len(dates),
                            bounds=f"[{cfg.min_weight}, {cfg.max_weight}]",
                        ),
                        audit_complete(meta_weights_key, ledger_check, n_records, len(dates)),
                    ],
                    metadata={"allocation": f"{cfg.allocation.engine}/{cfg.allocation.profile}"},
                )
            if run.is_selected(tree_key):
                refs = {
                    c.name: (meta_tree_name(c.name, risk) if c.kind == "meta" else sleeve_weights_name(c.name, risk))
                    for c in children
                }
                tree = Rows()
                for d, a in out.items():
                    assert a.labels is not None  # every Allocation in `out` is built with its cluster labels
                    node_rows = tree_rows(meta, names, np.asarray(a.weights, dtype=float), a.labels, refs)
                    tree.add(rebalance_date=[d] * len(node_rows["node"]), **node_rows)
                run.publish(
                    "meta_cluster_tree",
                    tree_key,
                    tree.frame(),
                    identity={"meta": meta, "risk": risk},
                    per_partition=lambda k, p: (
                        {"tree": MetadataValue.md(render_tree(last_date(p)))} if p.height else {}
                    ),
                )
            return out

        return decide, record_all

    def _portfolio_returns(
        run: Run, streams: dict[str, ChildStream], aligned: AlignedStreams | None, previous_key: str | None
    ) -> None:
        dates = run.dates
        weights = {}
        stored_prev = run.lh.read_partition("meta_weights", meta_weights_key, previous_key) if previous_key else None
        if stored_prev is not None:
            weights.update({d: a.weights for d, a in allocations_by_date(stored_prev).items()})
        weights.update(
            {d: a.weights for d, a in allocations_by_date(run.read("meta_weights", meta_weights_key)).items()}
        )
        rows = Rows()
        failures, skipped = {}, 0
        for d in dates:
            prev = run.periods.dates_before(d, 1)
            w = weights.get(prev[-1]) if prev else None
            if w is None:
                skipped += 1
                continue
            # Outer join: a child without a row on a day (no stream yet, another calendar) earns 0
            # that day; an inner join would drop the other children's realised returns.
            days, values = (
                aligned.outer(prev[-1], d) if aligned is not None else outer_matrix(streams, names, prev[-1], d)
            )
            if not len(days):
                continue
            port, _ = drift_array(w, values)
            rows.add(rebalance_date=[d] * len(days), date=days.tolist(), ret=port.tolist(), weights_date=prev[-1])
            problem = returns_problem(port, "daily return")
            if problem:
                failures[d.isoformat()] = problem
        run.publish(
            "meta_portfolio_returns",
            portfolio_returns_key,
            rows.frame(),
            identity={"meta": meta, "risk": risk},
            per_partition=lambda k, p: performance_metadata(p["date"].to_numpy(), p["ret"].to_numpy()),
            checks=[check_result("returns_in_bounds", portfolio_returns_key, failures, len(dates))],
            metadata={"dates_without_previous_weights": skipped},
        )

    def _flatten(run: Run, results: dict[dt.date, "Allocation"]) -> None:
        """Every date of the run flattened in one pass (`flatten_paths`), then checked date by date."""
        dates = run.dates
        day_of = {d: i for i, d in enumerate(dates)}
        weights = np.array([np.asarray(results[d].weights, dtype=float) for d in dates]).reshape(len(dates), -1)
        paths: list[ChildPaths | None] = []
        for c, name in zip(children, child_holdings):
            table, _ = child_weights_asset(c, risk)
            frame, runs = date_runs(run.read(table, name))
            runs = [(d, a, b) for d, a, b in runs if d in day_of]  # rows of the run's dates only
            if not runs:
                paths.append(None)
                continue
            rows = frame[np.concatenate([np.arange(a, b) for _, a, b in runs])]
            day = np.repeat([day_of[d] for d, _, _ in runs], [b - a for _, a, b in runs])
            if c.kind == "sleeve":
                child = ChildPaths.of_sleeve(
                    c.name,
                    day,
                    rows["atom_id"].to_list(),
                    rows["symbol"].to_list(),
                    rows["direction"].to_list(),
                    rows["weight"].to_numpy(),
                )
            else:
                child = ChildPaths(
                    day,
                    rows["symbol"].to_list(),
                    rows["path"].to_list(),
                    rows["sleeve"].to_list(),
                    rows["atom_id"].to_list(),
                    rows["direction"].to_list(),
                    rows["path_weight"].to_numpy().astype(float),
                    rows["sleeve_weight"].to_numpy().astype(float),
                    rows["contribution"].to_numpy().astype(float),
                )
            paths.append(child)
        listed: dict[dt.date, set[str]] = {}
        for u in universes:
            frame, runs = date_runs(run.read("candidates", candidates_name(u)))
            symbols = frame["symbol"].to_list()
            for d, a, b in runs:
                listed.setdefault(d, set()).update(symbols[a:b])
        contributions, flat = flatten_paths(meta, weights, paths)
        failures, sign_failures = {}, {}
        c_at = np.searchsorted(contributions["day"], np.arange(len(dates) + 1)).tolist()
        n_at = np.searchsorted(flat["day"], np.arange(len(dates) + 1)).tolist()
        for t, d in enumerate(dates):
            day_c = {k: v[c_at[t] : c_at[t + 1]] for k, v in contributions.items() if k != "day"}
            day_n = {k: v[n_at[t] : n_at[t + 1]] for k, v in flat.items() if k != "day"}
            problem = flattened_problem(day_n, day_c, listed.get(d, set()))
            if problem:
                failures[d.isoformat()] = problem
            sign_issue = sign_problem(day_c, directions)
            if sign_issue:
                sign_failures[d.isoformat()] = sign_issue

        def frame_of(columns: dict, names_: list[str]) -> pl.DataFrame:
            if not len(columns["day"]):
                return pl.DataFrame()
            return pl.DataFrame(
                {"rebalance_date": [dates[i] for i in columns["day"].tolist()], **{k: columns[k] for k in names_}}
            )

        contribs, flats = frame_of(contributions, CONTRIBUTION_COLUMNS), frame_of(flat, NET_COLUMNS)
        identity = {"meta": meta, "risk": risk}
        run.write("flattened_contributions", flattened_key, contribs, meta=meta, risk=risk)

        def exposure(k: str, p: pl.DataFrame) -> dict:
            last = last_date(p) if p.height else p
            return {
                "preview": preview(p),
                "gross_exposure_last_date": float(last["net_weight"].abs().sum()),
                "net_exposure_last_date": float(last["net_weight"].sum()),
            }

        run.publish(
            "flattened_weights",
            flattened_key,
            flats,
            identity=identity,
            per_partition=exposure,
            checks=[
                check_result("physical_and_conserved", flattened_key, failures, len(dates)),
                check_result("directional_sign_test", flattened_key, sign_failures, len(dates)),
            ],
        )

    def _reports(run: Run, results: dict, streams) -> None:
        reports = []
        last_dates = [ds[-1] for ds in ([d for d in run.periods.dates(k) if d in results] for k in run.keys) if ds]
        windows = {d: report_window_keys(run.periods, d, lookbacks) for d in last_dates}
        # each period's tables read once (from the run's cache), each report given its window's
        # periods only: filtering the whole run's tables for every report cost more than rendering
        by_key = {k: report_tables(run.lh, meta, risk, [k]) for k in sorted({k for ks in windows.values() for k in ks})}
        for d, keys in windows.items():
            tables = {t: pl.concat([by_key[k][t] for k in keys], how="vertical_relaxed") for t in REPORT_TABLES}
            reports.append(
                {
                    "rebalance_date": d,
                    "markdown": report_at(run.lh, meta, risk, d, run.periods, lookbacks, tables=tables),
                }
            )
        run.publish(
            "meta_report",
            report_key,
            pd.DataFrame(reports),
            identity={"meta": meta, "risk": risk},
            keep=False,  # one report per period, as of its last date: a resumed run replaces it
            per_partition=lambda k, p: {"report": MetadataValue.md(p["markdown"][0])} if p.height else {},
        )

    return MetaLens(specs, checks, compute)
