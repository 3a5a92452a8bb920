"""A universe's daily market data in memory, and what a rebalance date sees of it.

The lakehouse stores each close and each return once, on its own date. A computation for a
rebalance date D needs a trailing window of them: the `Panel` holds a span of sessions as numpy
arrays (dates x symbols, NaN where a symbol has no close) and slices the window of any D without
touching storage again, so an asset computing every date of a period reads its inputs once.

The window rule (point in time, as a snapshot taken at D would be): the sessions dated in
[D - calendar_days_covering(prices_days + 1), D], at most the last `prices_days + 1` of them; the
returns inside it are the closes' simple changes after its first session (`prices_days` rows at
most). A session is a session of the universe's trading calendar (`Panel.on_sessions`: one
no symbol traded is a row of missing closes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from quant_assets.data.calendars import calendar_days_covering
from quant_assets.data.health import VERDICT_COLUMNS, HealthPolicy, Verdicts, judge, simple_returns
from quant_assets.data.sessions import SESSIONS_PER_YEAR_EXCHANGE, TradingCalendar
from quant_assets.selection.features import FEATURE_COLUMNS, LIQUIDITY_BASELINE, features_of_windows

BAR_FIELDS = ["high", "low", "volume"]  # what the OHLC features read besides closes


@dataclass(frozen=True)
class Panel:
    """Sessions x symbols of one universe: closes and their simple returns (symbols sorted)."""

    dates: np.ndarray  # datetime64[D], ascending, unique
    symbols: tuple[str, ...]
    closes: np.ndarray  # (sessions, symbols), NaN where no close
    returns: np.ndarray = field(repr=False)  # (sessions, symbols), simple_returns(closes) over the span
    # highs, lows and volumes (same shape, NaN where absent) when the source brings bars; None for closes only
    bars: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def from_closes(cls, frame: pl.DataFrame, value: str = "close") -> Panel:
        """From long rows (date, symbol, `value`); `value="ret"` builds it from stored returns."""
        if frame.height == 0:
            empty = np.zeros((0, 0))
            return cls(np.array([], dtype="datetime64[D]"), (), empty, empty)
        wide = frame.select("date", "symbol", value).pivot(on="symbol", index="date", values=value).sort("date")
        symbols = tuple(sorted(c for c in wide.columns if c != "date"))
        dates = wide["date"].to_numpy().astype("datetime64[D]")
        values = wide.select(symbols).to_numpy().astype(float)
        if value != "close":
            return cls(dates, symbols, np.full(values.shape, np.nan), values)
        bars = None
        if all(c in frame.columns for c in BAR_FIELDS) and any(frame[c].is_not_null().any() for c in BAR_FIELDS):
            bars = {}
            for c in BAR_FIELDS:
                w = frame.select("date", "symbol", c).pivot(on="symbol", index="date", values=c).sort("date")
                bars[c] = w.select(symbols).to_numpy().astype(float)
        return cls(dates, symbols, values, simple_returns(values), bars)

    def on_sessions(self, calendar: TradingCalendar, until: dt.date) -> Panel:
        """The panel with a row for every session of `calendar` from its first date to `until` (the
        run's last rebalance date): a session no symbol traded is a row of missing closes (a gap the
        health policy counts, and no return bridges it), instead of silently vanishing from every
        window. Filling up to `until`, not to the last bar, keeps every window of the run the same
        whatever the data after it."""
        if self.dates.size == 0:
            return self
        sessions = calendar.sessions(self.dates[0].astype(dt.date), until)
        missing = np.setdiff1d(sessions, self.dates)
        if missing.size == 0:
            return self
        dates = np.union1d(self.dates, missing)
        at = np.searchsorted(dates, self.dates)

        def spread(values: np.ndarray) -> np.ndarray:
            out = np.full((len(dates), len(self.symbols)), np.nan)
            out[at] = values
            return out

        closes = spread(self.closes)
        if not np.isnan(self.closes).all():  # built from closes: no return bridges the gap
            bars = None if self.bars is None else {c: spread(v) for c, v in self.bars.items()}
            return Panel(dates, self.symbols, closes, simple_returns(closes), bars)
        returns = np.full(closes.shape, np.nan)  # built from stored returns, already computed on sessions
        returns[at] = self.returns
        return Panel(dates, self.symbols, closes, returns)

    @cached_property
    def iso(self) -> list[str]:
        """The sessions as `frame_hash` writes a date index (input hashes of the audit ledger)."""
        from quant_assets.data.hashing import iso_days

        return iso_days(self.dates)

    @cached_property
    def column(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    def columns(self, symbols) -> np.ndarray:
        """Column indices of `symbols` (a symbol the panel lacks is an error naming it)."""
        missing = [s for s in symbols if s not in self.column]
        if missing:
            raise KeyError(f"no market data for {missing[:5]}")
        return np.array([self.column[s] for s in symbols], dtype=np.intp)

    def row_at(self, d: dt.date) -> int:
        """Index of the last session on or before `d` (-1 when none)."""
        return int(np.searchsorted(self.dates, np.datetime64(d, "D"), side="right")) - 1

    def window_rows(self, d: dt.date, prices_days: int) -> tuple[int, int]:
        """[lo, hi] session rows of D's closes window (see the module doc); lo > hi when empty."""
        hi = self.row_at(d)
        first = np.datetime64(d - dt.timedelta(days=calendar_days_covering(prices_days + 1)), "D")
        lo = max(int(np.searchsorted(self.dates, first, side="left")), hi - prices_days)
        return lo, hi

    def between(self, after: dt.date | None, until: dt.date) -> slice:
        """Session rows dated in (after, until] (from the first session when `after` is None)."""
        lo = 0 if after is None else int(np.searchsorted(self.dates, np.datetime64(after, "D"), side="right"))
        return slice(lo, int(np.searchsorted(self.dates, np.datetime64(until, "D"), side="right")))


@dataclass
class WindowHealth:
    """A rebalance date's health verdicts and the rows of its dense returns matrix."""

    verdicts: Verdicts
    kept: list[str]  # kept symbols, sorted: the columns of the dense matrix
    rows: np.ndarray  # panel rows of the window where every kept symbol has a return


def health_at(
    panel: Panel, d: dt.date, symbols: list[str], policy: HealthPolicy, prices_days: int, min_history: int
) -> WindowHealth:
    """The verdicts of `symbols` on D (the window rule above) and the dense rows of the kept ones."""
    lo, hi = panel.window_rows(d, prices_days)
    cols = panel.columns(symbols)
    verdicts = judge(
        panel.closes[lo : hi + 1][:, cols], panel.returns[lo + 1 : hi + 1][:, cols], list(symbols), policy, min_history
    )
    kept = sorted(s for s, k in zip(symbols, verdicts.kept) if k)
    rows = np.arange(lo + 1, hi + 1)
    if kept:
        rows = rows[~np.isnan(panel.returns[lo + 1 : hi + 1][:, panel.columns(kept)]).any(axis=1)]
    else:
        rows = rows[:0]
    return WindowHealth(verdicts, kept, rows)


def dense_rows(panel: Panel, d: dt.date, kept: list[str], prices_days: int) -> np.ndarray:
    """Panel rows of D's window on which every kept symbol has a return (the dense matrix's dates)."""
    lo, hi = panel.window_rows(d, prices_days)
    rows = np.arange(lo + 1, hi + 1)
    if not kept:
        return rows[:0]
    return rows[~np.isnan(panel.returns[lo + 1 : hi + 1][:, panel.columns(kept)]).any(axis=1)]


def dense_matrix(panel: Panel, rows: np.ndarray, symbols: list[str]) -> np.ndarray:
    """(rows x symbols) returns of the dense window, columns in the order given."""
    return panel.returns[rows][:, panel.columns(symbols)] if len(symbols) else np.zeros((len(rows), 0))


@dataclass
class UniverseDates:
    """What a universe's returns stage decided on each rebalance date, with everything after it.

    Row frames carry `rebalance_date`; `kept`, `members` and `rows` are per date and feed the
    features, the regime and every sleeve of the universe.
    """

    health: pl.DataFrame  # returns_health rows
    coverage: dict[dt.date, float]
    kept: dict[dt.date, list[str]]  # sorted kept symbols (members and benchmarks)
    members: dict[dt.date, list[str]]  # sorted kept non-benchmark symbols
    benchmarks: dict[dt.date, list[str]]  # sorted kept benchmark symbols
    rows: dict[dt.date, np.ndarray]  # dense window rows


def judge_dates(
    panel: Panel,
    dates: list[dt.date],
    candidates: dict[dt.date, tuple[list[str], list[str]]],
    policy: HealthPolicy,
    prices_days: int,
    min_history: int,
) -> UniverseDates:
    """The health verdicts of every date's candidates (members, benchmarks) over its own window."""
    columns: dict[str, list] = {c: [] for c in ("rebalance_date", *VERDICT_COLUMNS)}
    coverage, kept, members, benchmarks, rows = {}, {}, {}, {}, {}
    for d in dates:
        mem, bench = candidates[d]
        symbols = sorted([*mem, *bench])
        w = health_at(panel, d, symbols, policy, prices_days, min_history)
        v = w.verdicts
        bench_set = set(bench)
        columns["rebalance_date"] += [d] * len(symbols)
        columns["symbol"] += v.symbols
        columns["status"] += ["kept" if k else "excluded" for k in v.kept]
        columns["reason"] += v.reason
        columns["value"] += v.value.tolist()
        columns["threshold"] += v.threshold.tolist()
        columns["n_obs"] += [int(x) for x in v.n_obs]
        coverage[d] = v.coverage
        kept[d] = w.kept
        members[d] = [s for s in w.kept if s not in bench_set]
        benchmarks[d] = [s for s in w.kept if s in bench_set]
        rows[d] = w.rows
    health = pl.DataFrame(columns, schema_overrides={"rebalance_date": pl.Date, "n_obs": pl.Int64})
    return UniverseDates(health, coverage, kept, members, benchmarks, rows)


@dataclass
class FeatureBlocks:
    """The features of some dates' kept symbols as numpy arrays: `values` (one row per (date,
    symbol), columns FEATURE_COLUMNS) and `owners` ((date, symbols) in row order). Numpy only, so
    a forked worker can compute it (`features_frame` makes the table in the step's process)."""

    values: np.ndarray
    owners: list[tuple[dt.date, list[str]]]


def feature_blocks(
    panel: Panel,
    u: UniverseDates,
    dates: list[dt.date],
    window: int,
    annualisation: int = SESSIONS_PER_YEAR_EXCHANGE,
    liquidity_baseline: float = LIQUIDITY_BASELINE,
) -> FeatureBlocks:
    """Features of every date's kept symbols, members and benchmarks scaled apart (a benchmark is a
    reference: it must not move the members' cross-sectional scores). One vectorised pass.
    `annualisation`: the universe calendar's periods per year (252 sessions, 365 for 24/7). When
    the panel has bars, each window's highs, lows and volumes (same sessions) feed the OHLC votes,
    ADX and adv; `liquidity_baseline` is the value traded that counts as fully liquid. Every row
    depends on its own window only, so any split of `dates` gives the same rows."""
    blocks, owners = [], []
    bars: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = []
    for d in dates:
        for group in (u.members[d], u.benchmarks[d]):
            if group:
                rows = u.rows[d]
                blocks.append(np.ascontiguousarray(dense_matrix(panel, rows, group).T))
                owners.append((d, group))
                if panel.bars is not None:
                    cols = panel.columns(group)
                    h, lo, c, v = (
                        np.ascontiguousarray(x[rows][:, cols].T)
                        for x in (panel.bars["high"], panel.bars["low"], panel.closes, panel.bars["volume"])
                    )
                    bars.append((h, lo, c, v))
    values = features_of_windows(
        blocks,
        window=window,
        annualisation=annualisation,
        bars=bars if panel.bars is not None else None,
        liquidity_baseline=liquidity_baseline,
    )
    return FeatureBlocks(np.concatenate(values) if values else np.zeros((0, len(FEATURE_COLUMNS))), owners)


def features_frame(parts: list[FeatureBlocks]) -> pl.DataFrame:
    """The features table (rebalance_date, symbol, FEATURE_COLUMNS) of blocks, in their order."""
    owners = [o for p in parts for o in p.owners]
    if not owners:
        return pl.DataFrame(
            schema={"rebalance_date": pl.Date, "symbol": pl.Utf8, **{c: pl.Float64 for c in FEATURE_COLUMNS}}
        )
    out = pl.DataFrame(np.concatenate([p.values for p in parts]), schema=FEATURE_COLUMNS, orient="row")
    return out.with_columns(
        pl.Series("rebalance_date", [d for d, g in owners for _ in g], dtype=pl.Date),
        pl.Series("symbol", [s for _, g in owners for s in g], dtype=pl.Utf8),
    )


def member_mean(panel: Panel, rows: np.ndarray, members: list[str]) -> np.ndarray:
    """The cross-sectional mean daily return of the members over the dense rows (the regime's input)."""
    if not members:
        return np.zeros(0)
    return dense_matrix(panel, rows, members).mean(axis=1)
