"""Per-universe step: candidates -> prices -> returns (health policy) -> features, regime.

Prices and returns are stored once per session, in the partition of their date; everything a
rebalance date decides (health verdicts, features, regime) is computed on that date's trailing
window, which reaches into the two previous periods' files. The calendar's first partition also
stores the warm-up sessions its first window needs, so the history starts self-contained.
"""

import contextlib
import datetime as dt
import functools
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import polars as pl
from dagster import AssetCheckSpec, AssetExecutionContext, AssetSpec, MetadataValue

from quant_assets.assets.common import (
    GraphContext,
    LakehouseResource,
    Run,
    candidates_name,
    check_result,
    date_runs,
    features_name,
    preview,
    prices_name,
    regime_name,
    returns_name,
    table_metadata,
)
from quant_assets.assets.parallel import by_chunks
from quant_assets.assets.progress import track
from quant_assets.audit.checks import coverage_problem
from quant_assets.data.calendars import calendar_days_covering
from quant_assets.data.sessions import DEFAULT_CALENDAR, TradingCalendar, UnknownCalendar, trading_calendar
from quant_assets.data.sources import PriceSource, get_source
from quant_assets.data.validation import DataError, validate_closes, validate_symbol
from quant_assets.meta.plots import regime_strip_md
from quant_assets.selection import features
from quant_assets.selection.features import LIQUIDITY_BASELINE, LIQUIDITY_BASELINE_CRYPTO
from quant_assets.selection.market import (
    Panel,
    UniverseDates,
    dense_rows,
    feature_blocks,
    features_frame,
    judge_dates,
    member_mean,
)
from quant_assets.selection.regime import COMPONENTS, detect_regimes

CANDIDATE_COLUMNS = [
    "symbol",
    "ticker",
    "exchange",
    "asset_type",
    "sector",
    "first_date",
    "direction",
    "metadata",
    "is_benchmark",
]


CLOSE_COLUMNS = ("date", "symbol", "close", "high", "low", "volume")  # what a Panel holds
BAR_COLUMNS = ["date", "symbol", "open", "high", "low", "close", "volume"]


def window_start(d: dt.date, prices_days: int) -> dt.date:
    """The earliest session date D's price window can reach."""
    return d - dt.timedelta(days=calendar_days_covering(prices_days + 1))


def discover(
    universe_cfg, d: dt.date, sources: Callable[[str], PriceSource] = get_source, everything: bool = False
) -> list[dict]:
    """Candidate rows of a universe on `d`: its source's symbols listed by then, and its benchmarks.
    `sources` resolves a source name (the manifest's `price_source`: built-in, files or connector);
    `everything` skips a source's ranking (`PriceSource.listed`: what a period's prices must cover)."""
    source = sources(universe_cfg.source)
    listed = source.listed(d, universe_cfg.symbols) if everything else source.discover(d, universe_cfg.symbols)
    found = [c.row() | {"is_benchmark": False} for c in listed]
    for ref in universe_cfg.benchmarks:  # reference series: same schema, flagged, priced from their own source
        source, _, ticker = ref.partition(":")
        found += [c.row() | {"is_benchmark": True} for c in sources(source).discover(d, [ticker])]
    for row in found:
        validate_symbol(row["symbol"], universe_cfg.source)
    return found


def candidate_sets(cands: pl.DataFrame) -> dict[dt.date, tuple[list[str], list[str]]]:
    """(members, benchmarks) per rebalance date, each sorted."""
    frame, runs = date_runs(cands)
    symbols, flags = frame["symbol"].to_list(), frame["is_benchmark"].to_list()
    out: dict[dt.date, tuple[list[str], list[str]]] = {}
    for d, a, b in runs:
        pairs = list(zip(symbols[a:b], flags[a:b]))
        out[d] = (sorted(s for s, f in pairs if f is False), sorted(s for s, f in pairs if f is True))
    return out


def source_closes(
    by_source: dict[str, list[str]],
    start: dt.date,
    end: dt.date,
    calendar: TradingCalendar | None = None,
    sources: Callable[[str], PriceSource] = get_source,
) -> pl.DataFrame:
    """Long (date, symbol, open, high, low, close, volume) rows with start <= date <= end and a
    close, each symbol from its own source, validated at the door against the universe's trading
    calendar (`validate_closes`: sorted unique dates, positive closes, sessions only; default XNYS).
    A source of closes only leaves open, high, low and volume null."""
    calendar = calendar or trading_calendar(DEFAULT_CALENDAR["equity"])
    frames = []
    for name, symbols in by_source.items():
        source = sources(name)
        window = source.closes(symbols, start, end)
        validate_closes(window, name, calendar)
        if len(window) and window.index.max().date() > end:
            raise RuntimeError(f"source {name!r} returned prices after {end}")
        if len(window):
            frames.append(source.bars(symbols, start, end).filter(pl.col("close").is_not_null()))
    if not frames:
        return pl.DataFrame(schema={"date": pl.Date, "symbol": pl.Utf8, **{c: pl.Float64 for c in BAR_COLUMNS[2:]}})
    return pl.concat(frames, how="vertical_relaxed").select(BAR_COLUMNS).sort("date", "symbol")


def sync_sources(universe_cfg, start: dt.date, end: dt.date, sources: Callable[[str], PriceSource]) -> dict:
    """Bring the ingest store of every connector source the universe reads up to date for
    [start, end]; {source name: SyncReport}. Built-in and file sources need no sync."""
    from quant_assets.data.connectors.store import ConnectorSource

    names = {universe_cfg.source, *(ref.partition(":")[0] for ref in universe_cfg.benchmarks)}
    return {
        name: source.sync(start, end) for name in sorted(names) if isinstance(source := sources(name), ConnectorSource)
    }


def by_source(rows: list[dict]) -> dict[str, list[str]]:
    """Candidate rows grouped by the source that prices them (the candidate's metadata says which)."""
    out: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["symbol"]):
        out.setdefault(json.loads(r["metadata"])["source"], []).append(r["symbol"])
    return out


def universe_view(
    run: Run, universe: str, span_from: dt.date, panel_from: str = "returns"
) -> tuple[Panel, UniverseDates]:
    """A downstream step's view of a universe: the panel from `span_from` and the stored health
    verdicts (kept, members, benchmarks, dense rows) of the run's dates."""
    m = run.graph.manifest
    lookbacks = m.lookbacks
    keys = run.earlier_keys(span_from) + run.keys
    table, column = ("returns", "ret") if panel_from == "returns" else ("prices", "close")
    name = returns_name(universe) if table == "returns" else prices_name(universe)
    # the same session rows as the universe step's panel had for these dates (stored returns lack a
    # session no symbol traded after the last rebalance date of its period)
    panel = Panel.from_closes(run.read(table, name, keys), value=column).on_sessions(
        m.universes[universe].trading_calendar, run.dates[-1]
    )
    health = run.read("returns_health", returns_name(universe))
    cands = run.read("candidates", candidates_name(universe))
    bench = set(cands.filter(pl.col("is_benchmark"))["symbol"].to_list())
    kept: dict[dt.date, list[str]] = {}
    members: dict[dt.date, list[str]] = {}
    benchmarks: dict[dt.date, list[str]] = {}
    rows: dict[dt.date, np.ndarray] = {}
    coverage: dict[dt.date, float] = {}
    for (d,), g in health.filter(pl.col("status") == "kept").group_by("rebalance_date"):
        k = sorted(g["symbol"].to_list())
        kept[d] = k
    for d in run.dates:
        k = kept.setdefault(d, [])
        members[d] = [s for s in k if s not in bench]
        benchmarks[d] = [s for s in k if s in bench]
        rows[d] = dense_rows(panel, d, k, lookbacks.prices_days)
    return panel, UniverseDates(health, coverage, kept, members, benchmarks, rows)


def universe_step(ctx: GraphContext, universe: str):
    m = ctx.manifest
    cfg = m.universes[universe]
    lookbacks = m.lookbacks
    candidates_key, prices_key, returns_key, features_key, regime_key = (
        candidates_name(universe),
        prices_name(universe),
        returns_name(universe),
        features_name(universe),
        regime_name(universe),
    )
    calendar = cfg.trading_calendar
    # the regime's vol level is annualised on the universe's calendar unless the manifest says otherwise
    s = (
        cfg.regime
        if cfg.regime.annualisation
        else cfg.regime.model_copy(update={"annualisation": calendar.annualisation})
    )
    common = ctx.spec_defaults
    specs = [
        AssetSpec(
            candidates_key,
            metadata=table_metadata("candidates"),
            group_name="market_data",
            kinds={"python", "parquet"},
            **common,
            description=f"Symbols listed in universe `{universe}` (source `{cfg.source}`) on each rebalance "
            f"date, in the standard candidate schema; benchmarks flagged.",
        ),
        AssetSpec(
            prices_key,
            metadata=table_metadata("prices"),
            group_name="market_data",
            kinds={"python", "parquet"},
            deps=[candidates_key],
            **common,
            description=f"Daily closes of `{universe}`, one row per symbol and session, stored once in the "
            f"partition of its date. A rebalance date's window is its last {lookbacks.prices_days} sessions "
            f"and reaches into the two previous periods.",
        ),
        AssetSpec(
            returns_key,
            metadata=table_metadata("returns"),
            group_name="market_data",
            kinds={"python", "parquet"},
            deps=[prices_key, candidates_key],
            **common,
            description=f"Simple daily returns of `{universe}` (stored once per session) and, per rebalance "
            f"date, the health verdict of every candidate on its window (floor "
            f"{lookbacks.min_history_days} obs, |r| <= {m.health.toxic_abs_return}, no zero variance, "
            f"no forward fill) in `returns_health`.",
        ),
        AssetSpec(
            features_key,
            metadata=table_metadata("features"),
            group_name="selection",
            kinds={"numpy", "parquet"},
            deps=[returns_key, candidates_key],
            skippable=True,
            **common,
            description=f"Per-symbol features of `{universe}` on each rebalance date: the trailing "
            f"{lookbacks.features_days} sessions for path features (momentum, volatility, entropy, "
            f"efficiency, ADF, wavelet turbulence), the whole window for sample-hungry ones (Hurst, "
            f"skew, kurtosis, CVaR, antifragility, technical ratings). Closes only: liquidity is NaN "
            f"until a source brings volume.",
        ),
        AssetSpec(
            regime_key,
            metadata=table_metadata("regime"),
            group_name="selection",
            kinds={"numpy", "parquet"},
            deps=[returns_key, candidates_key],
            skippable=True,
            **common,
            description=f"Regime of `{universe}` on the trailing {s.lookback_days} sessions of its "
            f"cross-sectional mean return (benchmarks excluded): QUIET < {s.quiet_below} <= NORMAL "
            f"< {s.turbulent_at} <= TURBULENT < {s.crisis_at} <= CRISIS. Drives cluster thresholds, "
            f"cluster caps and the barbell's aggressor share.",
        ),
    ]
    checks = [
        AssetCheckSpec(
            "health_coverage",
            asset=returns_key,
            blocking=True,
            description=f"Share of eligible symbols kept >= {m.health.min_coverage}",
        )
    ]

    @ctx.step(f"universe_{universe}", specs, checks)
    def universe_data(context: AssetExecutionContext, lakehouse: LakehouseResource):
        run = Run.of(context, ctx, lakehouse.get())
        dates = run.dates
        span_from = window_start(dates[0], lookbacks.prices_days)
        sources = functools.partial(m.price_source, root=run.lh.root)
        # 0. a connector source brings its store up to date first (only the days it lacks)
        ingest = {}
        if {candidates_key, prices_key} & run.selected:
            span_to = run.periods.window(run.keys[-1])[1] - dt.timedelta(days=1)
            span_to = min(span_to, m.calendar.end - dt.timedelta(days=1)) if m.calendar.end else span_to
            ingest = sync_sources(cfg, span_from, span_to, sources)
            for name, report in ingest.items():
                for symbol, error in report.failures().items():
                    context.log.warning(f"{name}: {symbol} not fetched ({error}); the next run asks again")
        ingest_md = {
            f"ingest_{name}": MetadataValue.json(report.counts() | {"seconds": round(report.seconds, 2)})
            for name, report in ingest.items()
        }

        def period_closes(key: str) -> pl.DataFrame:
            """The daily closes of a period: every symbol known by its end, the days inside it (the
            calendar's first period also holds the warm-up sessions its first window needs)."""
            start, end = run.periods.window(key)
            if key == run.periods.keys[0]:
                start = window_start(run.periods.dates(key)[0], lookbacks.prices_days)
            end = min(end, m.calendar.end) if m.calendar.end else end
            listed = discover(cfg, end - dt.timedelta(days=1), sources, everything=True)
            try:
                return source_closes(by_source(listed), start, end - dt.timedelta(days=1), calendar, sources)
            except DataError as e:  # say which universe (and so which calendar and benchmarks) it was
                raise DataError(f"universe {universe!r} (calendar {calendar.name}): {e}") from None

        # 1. candidates
        if run.is_selected(candidates_key):
            rows = []
            for d in track(dates, f"{candidates_key}"):
                found = discover(cfg, d, sources)
                rows += [r | {"rebalance_date": d} for r in found]
            cands = (
                pl.DataFrame(
                    rows, schema_overrides={"rebalance_date": pl.Date, "first_date": pl.Date, "sector": pl.Utf8}
                )
                if rows
                else pl.DataFrame()
            )
            parts = run.publish(
                "candidates",
                candidates_key,
                cands,
                identity={"universe": universe},
                per_partition=lambda k, p: {
                    "preview": preview(p),
                    "n_candidates_last_date": p.filter(pl.col("rebalance_date") == p["rebalance_date"].max()).height,
                },
                metadata={"benchmarks": ", ".join(cfg.benchmarks) or "none", **ingest_md},
            )
            cands = pl.concat(list(parts.values()))
        else:
            cands = run.read("candidates", candidates_key)
        sets = candidate_sets(cands)
        # 2. prices
        if run.is_selected(prices_key):
            # the exchange's sessions of the whole run built once (0.35 s), not once per decade as
            # the periods advance (what validating each period's closes alone would do); only a
            # cache warm-up: a calendar that cannot cover the span fails below, naming the universe
            last_day = run.periods.window(run.keys[-1])[1] - dt.timedelta(days=1)
            if m.calendar.end:
                last_day = min(last_day, m.calendar.end - dt.timedelta(days=1))
            with contextlib.suppress(UnknownCalendar):
                calendar.sessions(span_from, last_day)
            prices = pl.concat([period_closes(key) for key in run.keys])
            parts = run.publish(
                "prices",
                prices_key,
                prices,
                identity={"universe": universe},
                column="date",
                per_partition=lambda k, p: {"symbols": p["symbol"].n_unique()},
                metadata=ingest_md,
            )
        if not {returns_key, features_key, regime_key} & run.selected:
            yield from run.results()
            return
        earlier = run.earlier_keys(span_from)
        stored = set(run.lh.partitions("prices", prices_key))
        closes = run.read("prices", prices_key, [k for k in earlier if k in stored]).select(CLOSE_COLUMNS)
        if missing := [k for k in earlier if k not in stored]:
            # A range starting mid-history: the window's earlier sessions come from the source, as
            # those periods' prices would (the same function); nothing is written for them.
            context.log.info(
                f"{prices_key}{missing} not in the lakehouse: the window's earlier sessions are read from the source"
            )
            closes = pl.concat([closes, *(period_closes(k).select(CLOSE_COLUMNS) for k in missing)])
        current = (
            pl.concat(list(parts.values())) if run.is_selected(prices_key) else run.read("prices", prices_key)
        ).select(CLOSE_COLUMNS)
        panel = Panel.from_closes(
            pl.concat([closes, current], how="vertical_relaxed") if closes.height else current
        ).on_sessions(calendar, dates[-1])  # a session without any bar is a row of missing closes
        # 3. returns and health verdicts
        if run.is_selected(returns_key):
            first_row = int(np.searchsorted(panel.dates, np.datetime64(run.periods.window(run.first_key)[0], "D")))
            if run.first_key == run.periods.keys[0]:
                first_row = 0  # the warm-up sessions are the first partition's
            elif first_row == 0 and panel.dates.size:
                raise RuntimeError(
                    f"{returns_key}[{run.first_key}]: the first session's return needs the previous "
                    f"period's last close: materialise {prices_key}[{run.periods.previous(run.first_key)}]"
                )
            have = ~np.isnan(panel.closes[first_row:])
            # a session no symbol traded is stored as missing returns, so every reader's windows count it
            have |= ~have.any(axis=1, keepdims=True)
            r_idx, c_idx = np.nonzero(have)
            returns = pl.DataFrame(
                {
                    "date": panel.dates[first_row:][r_idx],
                    "symbol": np.array(panel.symbols, dtype=object)[c_idx],
                    "ret": panel.returns[first_row:][r_idx, c_idx],
                }
            ).with_columns(pl.col("date").cast(pl.Date), pl.col("ret").fill_nan(None))
            u = judge_dates(panel, dates, sets, m.health, lookbacks.prices_days, lookbacks.min_history_days)
            hparts = run.write("returns_health", returns_key, u.health, universe=universe)
            failures = {}
            for d in dates:
                problem = coverage_problem(u.coverage[d], m.health.min_coverage)
                if problem:
                    failures[d.isoformat()] = problem

            def verdicts(key: str, _: pl.DataFrame) -> dict:
                h = hparts[key]  # the health verdicts of the period (the returns' partition has no dates)
                last = h.filter(pl.col("rebalance_date") == h["rebalance_date"].max()) if h.height else h
                excluded = h.filter(pl.col("status") == "excluded").group_by("reason").len()
                return {
                    "symbols_kept_last_date": int((last["status"] == "kept").sum()) if last.height else 0,
                    "exclusions_by_reason": MetadataValue.json(
                        dict(zip(excluded["reason"].to_list(), excluded["len"].to_list()))
                    ),
                }

            run.publish(
                "returns",
                returns_key,
                returns,
                identity={"universe": universe},
                column="date",
                per_partition=verdicts,
                checks=[
                    check_result("health_coverage", returns_key, failures, len(dates), threshold=m.health.min_coverage)
                ],
            )
            if failures:  # a blocking check: what is computed from these returns waits until they are fixed
                context.log.error(
                    f"{returns_key}: health_coverage failed on {len(failures)} dates; "
                    f"{features_key} and {regime_key} are not materialised"
                )
                run.selected -= {features_key, regime_key}
        else:
            # the verdicts judged again on the panel (cheap), not read from storage: a subset that
            # rewrote the prices without the returns must not compute features on the old verdicts
            u = judge_dates(panel, dates, sets, m.health, lookbacks.prices_days, lookbacks.min_history_days)
        # 4-5. features and regime, of the dates whose inputs (the prices, candidates and health
        # verdicts as just written, or stored when not selected) changed: a date's features read the
        # window up to it. Not when the window's earlier sessions came from the source: they are in
        # no file to fingerprint.
        fdates = dates
        if {features_key, regime_key} & run.selected and not missing:
            run.resume(inputs=[prices_key, returns_key, candidates_key], keys=[features_key, regime_key])
            fdates = run.dates
        # 4. features
        if run.is_selected(features_key):
            baseline = LIQUIDITY_BASELINE_CRYPTO if cfg.asset_class == "crypto" else LIQUIDITY_BASELINE
            feats = features_frame(  # the stacked window kernels of the dates, on every core
                by_chunks(
                    lambda chunk: feature_blocks(
                        panel, u, chunk, lookbacks.features_days, calendar.annualisation, baseline
                    ),
                    fdates,
                    preload=[features.preload],
                )
            )
            run.publish(
                "features",
                features_key,
                feats,
                identity={"universe": universe},
                per_partition=lambda k, p: {"preview": preview(p)},
            )
        # 5. regime
        if run.is_selected(regime_key):
            readings = detect_regimes([member_mean(panel, u.rows[d], u.members[d]) for d in fdates], s)
            frame = pd.DataFrame(
                [
                    {
                        "rebalance_date": d,
                        "score": r.score,
                        "label": r.label,
                        **{c: getattr(r, c) for c in COMPONENTS},
                        "n_obs": r.n_obs,
                    }
                    for d, r in zip(fdates, readings)
                ]
            )

            def timeline(key: str, p: pl.DataFrame) -> dict:
                labels = p["label"].to_list()
                return {
                    "label_last_date": labels[-1] if labels else "",
                    "label_counts": MetadataValue.json(pd.Series(labels).value_counts().to_dict()),
                    "timeline": MetadataValue.md(
                        regime_strip_md(
                            [str(x) for x in p["rebalance_date"].to_list()], labels, f"Regime of {universe}, {key}"
                        )
                    ),
                }

            run.publish("regime", regime_key, frame, identity={"universe": universe}, per_partition=timeline)
        yield from run.results()

    return universe_data


def universe_assets(ctx: GraphContext, universe: str) -> list:
    return [universe_step(ctx, universe)]
