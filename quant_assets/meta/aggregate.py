"""The meta layer's maths: aggregate children's streams, build the cluster tree, flatten to symbols.

Pure functions over pandas objects; the Dagster assets in `assets/meta.py` only read, call these
and write. Flattening works on *contribution rows* (one per root-to-atom path) so that nesting is
just "scale the child's rows by the child's weight and prefix the path", at any depth, and every
physical weight stays traceable to the paths that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from quant_assets.allocation.optimise import optimise_array, project_bounded_simplex
from quant_assets.data.hashing import iso_days
from quant_assets.selection.clustering import Dendrogram

FLAT_STD = 1e-12

CONTRIBUTION_COLUMNS = [
    "symbol",
    "path",
    "sleeve",
    "atom_id",
    "direction",
    "path_weight",
    "sleeve_weight",
    "contribution",
]


def _utc_index(s: pd.Series) -> pd.Series:
    idx = pd.DatetimeIndex(s.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return pd.Series(s.to_numpy(), index=idx.normalize(), name=s.name)


def aggregate(streams: dict[str, pd.Series], join: str = "inner") -> tuple[pd.DataFrame, dict]:
    """Children's daily returns side by side. Inner join keeps the dates every child has.

    Indexes are normalised to UTC first: joining tz-naive with tz-aware dates silently empties an
    inner join. Returns the matrix and the join's bookkeeping.
    """
    if join not in ("inner", "outer"):
        raise ValueError(f"join must be 'inner' or 'outer', got {join!r}")
    cols = {name: _utc_index(s) for name, s in streams.items()}
    for name, s in cols.items():
        if s.index.duplicated().any():
            raise ValueError(f"stream {name!r} has duplicated dates: {s.index[s.index.duplicated()][:3].tolist()}")
    if not cols:
        return pd.DataFrame(), {"union_days": 0, "kept_days": 0, "lost_share": 0.0}
    frame = pd.concat(cols, axis=1, join=join).sort_index()
    union = len(pd.concat(cols, axis=1, join="outer"))
    info = {"union_days": union, "kept_days": len(frame), "lost_share": (1 - len(frame) / union) if union else 0.0}
    return frame, info


def sleeve_contributions(sleeve: str, weights: pd.DataFrame) -> pd.DataFrame:
    """A sleeve's own contribution rows: path = sleeve, path weight 1, signed by direction."""
    if weights.empty:
        return pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    sign = np.where(weights["direction"].str.upper() == "SHORT", -1.0, 1.0)
    return pd.DataFrame(
        {
            "symbol": weights["symbol"].to_numpy(),
            "path": sleeve,
            "sleeve": sleeve,
            "atom_id": weights["atom_id"].to_numpy(),
            "direction": weights["direction"].str.upper().to_numpy(),
            "path_weight": 1.0,
            "sleeve_weight": weights["weight"].to_numpy(dtype=float),
            "contribution": sign * weights["weight"].to_numpy(dtype=float),
        }
    )


def flatten(meta: str, child_weights: pd.Series, child_rows: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Contribution rows of `meta`: each child's rows scaled by the child's weight, path prefixed.

    `child_rows[c]` are the child's contribution rows (a sleeve's from `sleeve_contributions`, a
    child meta's from its own `flatten`). path_weight is the product of meta weights along the
    path; contribution = path_weight x sleeve_weight x sign.
    """
    parts = []
    for child, w in child_weights.items():
        rows = child_rows.get(child)
        if rows is None or rows.empty or w == 0:
            continue
        scaled = rows.copy()
        scaled["path"] = meta + "/" + scaled["path"]
        scaled["path_weight"] = scaled["path_weight"] * w
        scaled["contribution"] = scaled["contribution"] * w
        parts.append(scaled)
    if not parts:
        return pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONTRIBUTION_COLUMNS]


def net_by_symbol(contributions: pd.DataFrame, min_abs: float = 0.0) -> pd.DataFrame:
    """Physical view: signed net weight per symbol, long and short gross kept apart."""
    cols = ["symbol", "net_weight", "long_weight", "short_weight", "n_paths", "contributors"]
    if contributions.empty:
        return pd.DataFrame(columns=cols)
    c = contributions
    grouped = c.groupby("symbol", sort=False)
    out = pd.DataFrame(
        {
            "net_weight": grouped["contribution"].sum(),
            "long_weight": c["contribution"].clip(lower=0).groupby(c["symbol"], sort=False).sum(),
            "short_weight": (-c["contribution"].clip(upper=0)).groupby(c["symbol"], sort=False).sum(),
            "n_paths": grouped.size(),
            "contributors": grouped[["path", "contribution"]].apply(
                lambda g: "; ".join(
                    f"{p} {v:+.4f}" for p, v in sorted(zip(g["path"], g["contribution"]), key=lambda t: -abs(t[1]))
                )
            ),
        }
    ).reset_index()
    out = out[out["net_weight"].abs() >= min_abs] if min_abs > 0 else out
    return out.reindex(out["net_weight"].abs().sort_values(ascending=False).index).reset_index(drop=True)[cols]


def child_clusters(weights: pd.Series, returns: pd.DataFrame, threshold: float = 0.5) -> pd.Series:
    """Correlation cluster (1-based) of each child; children without enough data get their own."""
    names = list(weights.index)
    usable = [c for c in names if c in returns.columns]
    if len(usable) >= 2:
        X = returns[usable].to_numpy(dtype=float)
        clean = X[~np.isnan(X).any(axis=1)]
        if len(clean) >= 3:
            found = dict(zip(usable, Dendrogram.of(clean).labels(threshold)[0].tolist()))
            free = iter(range(max(found.values()) + 1, max(found.values()) + 1 + len(names)))
            return pd.Series([found[c] if c in found else next(free) for c in names], index=weights.index, dtype=int)
    return pd.Series(np.arange(1, len(weights) + 1), index=weights.index)


def cluster_tree(
    meta: str, weights: pd.Series, returns: pd.DataFrame, threshold: float, refs: dict[str, str]
) -> pd.DataFrame:
    """The uncollapsed tree at one level: meta -> correlation clusters of children -> children.

    Child rows carry their intra-cluster weight and a `ref` to the child's own artefact (a child
    meta's tree, a sleeve's weights), so nested levels are linked by reference, not copied.
    """
    labels = child_clusters(weights, returns, threshold)
    rows = [
        {
            "node": meta,
            "parent": "",
            "level": 0,
            "kind": "meta",
            "weight": float(weights.sum()),
            "intra_weight": 1.0,
            "ref": "",
        }
    ]
    for label in sorted(labels.unique()):
        members = labels.index[labels == label]
        cw = float(weights[members].sum())
        node = f"{meta}/cluster_{label}"
        rows.append(
            {"node": node, "parent": meta, "level": 1, "kind": "cluster", "weight": cw, "intra_weight": 1.0, "ref": ""}
        )
        for child in members:
            rows.append(
                {
                    "node": child,
                    "parent": node,
                    "level": 2,
                    "kind": "child",
                    "weight": float(weights[child]),
                    "intra_weight": float(weights[child] / cw) if cw > 0 else 0.0,
                    "ref": refs.get(child, ""),
                }
            )
    return pd.DataFrame(rows)


def success_share(outcomes: list[bool]) -> float:
    """Share of successful optimisations (NaN when there is nothing to judge)."""
    return float(np.mean(outcomes)) if outcomes else float("nan")


def health_vetoes(matrix: pd.DataFrame, shares: dict[str, float], threshold: float) -> dict[str, str]:
    """Children to veto at this date, with the reason.

    A child is vetoed when its share of successful optimisations over the window is below
    `threshold`, when its stream is flat (no investable data: a sleeve sitting in cash), or when it
    has no stream in the window while other children do.
    """
    return health_vetoes_array(matrix.to_numpy(dtype=float), list(matrix.columns), shares, threshold)


def health_vetoes_array(
    values: np.ndarray, names: list[str], shares: dict[str, float], threshold: float
) -> dict[str, str]:
    """`health_vetoes` on the (days x children) matrix as an array."""
    vetoed: dict[str, str] = {}
    present = ~np.isnan(values)
    has_data = bool(present.any())
    for j, child in enumerate(names):
        col = values[present[:, j], j]
        share = shares.get(child, float("nan"))
        if len(col) == 0 and has_data:  # nobody has data yet is a history question, not a health one
            vetoed[child] = "no stream in the window"
        elif len(col) >= 2 and col.std(ddof=0) <= FLAT_STD:
            vetoed[child] = "flat stream: no investable data in the window"
        elif not np.isnan(share) and share < threshold:
            vetoed[child] = f"optimisation success {share:.0%} < {threshold:.0%} over the window"
    return vetoed


class AllocationOutcome(StrEnum):
    """How a meta's weights on a date were produced (the `outcome` column of `meta_weights`)."""

    OPTIMISED = "optimised"  # the configured allocation ran
    FALLBACK = "fallback"  # a later profile of the fallback chain produced them
    EQUAL_WEIGHT = "equal_weight"  # too little history, or every child vetoed
    SINGLE_CHILD = "single_child"  # one child holds 1.0 by construction: nothing to allocate


@dataclass
class MetaAllocation:
    """A meta's weights at one date and how they were produced (`values` / `raw_values` in child order)."""

    values: np.ndarray
    raw_values: np.ndarray
    names: list[str]
    engine: str
    profile_used: str
    status: str
    vetoed: dict[str, str] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 1.0)
    outcome: AllocationOutcome = AllocationOutcome.OPTIMISED

    @property
    def weights(self) -> pd.Series:
        return pd.Series(self.values, index=self.names, dtype=float)

    @property
    def raw(self) -> pd.Series:
        return pd.Series(self.raw_values, index=self.names, dtype=float)


def allocate(
    matrix: pd.DataFrame,
    *,
    profile: str,
    engine: str,
    chain: tuple[str, ...],
    lower: float,
    upper: float,
    min_history: int,
    vetoed: dict[str, str],
) -> MetaAllocation:
    """Optimise across the healthy children, then project onto the manifest's bounds.

    Vetoed children get exactly 0 and the rest are re-normalised. If the survivors cannot reach
    1 under `upper` (2 children, max 0.9, one vetoed), the cap is relaxed to 1/n and said so.
    With every child vetoed the meta falls back to equal weight, flagged in the status.
    """
    return allocate_array(
        matrix.to_numpy(dtype=float),
        list(matrix.columns),
        profile=profile,
        engine=engine,
        chain=chain,
        lower=lower,
        upper=upper,
        min_history=min_history,
        vetoed=vetoed,
    )


def allocate_array(
    values: np.ndarray,
    names: list[str],
    *,
    profile: str,
    engine: str,
    chain: tuple[str, ...],
    lower: float,
    upper: float,
    min_history: int,
    vetoed: dict[str, str],
) -> MetaAllocation:
    """`allocate` on the (days x children) matrix as an array, children named `names`."""
    live = [i for i, c in enumerate(names) if c not in vetoed]
    notes = [f"vetoed {c} ({r})" for c, r in vetoed.items()]
    k = len(names)
    if k == 1 and live:  # a wrapper meta (its own lens, report and orders over one child)
        one = np.ones(1)
        return MetaAllocation(
            one,
            one.copy(),
            names,
            "platform",
            "single_child",
            f"single_child: {names[0]} holds 1.0 by construction (no optimisation)",
            {},
            (0.0, 1.0),
            AllocationOutcome.SINGLE_CHILD,
        )
    if not live:
        w = np.full(k, 1.0 / k)
        return MetaAllocation(
            w,
            w.copy(),
            names,
            "platform",
            "equal_weight",
            "equal_weight: every child vetoed; " + "; ".join(notes),
            dict(vetoed),
            (0.0, 1.0),
            AllocationOutcome.EQUAL_WEIGHT,
        )
    if len(values) < min_history:
        raw = np.full(len(live), 1.0 / len(live))
        eng, used, status = "platform", "equal_weight", f"equal_weight: {len(values)} < {min_history} days of history"
        outcome = AllocationOutcome.EQUAL_WEIGHT
    else:
        result = optimise_array(values[:, live], [names[i] for i in live], profile, engine=engine, chain=chain)
        raw, eng, used = np.nan_to_num(result.values, nan=0.0), result.engine, result.profile_used
        outcome = AllocationOutcome.FALLBACK if result.fallback_used else AllocationOutcome.OPTIMISED
        status = "optimised" if not result.fallback_used else f"fallback: {result.chain_text()}"
    lo, hi = lower, max(upper, 1.0 / len(live))
    if hi != upper:
        notes.append(f"max weight relaxed to {hi:.4f} for {len(live)} healthy children")
    weights = np.zeros(k)
    weights[live] = project_bounded_simplex(raw, lo, hi)
    full_raw = np.zeros(k)
    full_raw[live] = raw
    return MetaAllocation(
        weights, full_raw, names, eng, used, "; ".join([status, *notes]), dict(vetoed), (lo, hi), outcome
    )


def cluster_labels(values: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """`child_clusters` on the (days x children) matrix as an array: 1-based correlation clusters of the
    days every child has; children without enough data each get their own."""
    k = values.shape[1]
    clean = values[~np.isnan(values).any(axis=1)]
    if k >= 2 and len(clean) >= 3:
        return Dendrogram.of(clean).labels(threshold)[0]
    return np.arange(1, k + 1)


# ---- the same maths on arrays, for every rebalance date of a backtest --------------------------


class ChildStream:
    """A child's daily stream as arrays sorted by holding period, so any window of periods is a slice.

    `periods[i]` is the rebalance date whose holding period (previous date, periods[i]] day
    `dates[i]` belongs to; a meta's window is a range of periods, as its children's streams are
    stored by period.
    """

    def __init__(self, periods: np.ndarray, dates: np.ndarray, values: np.ndarray):
        order = np.lexsort((dates, periods))
        self.periods, self.dates, self.values = periods[order], dates[order], values[order]

    @classmethod
    def empty(cls) -> ChildStream:
        e = np.array([], dtype="datetime64[D]")
        return cls(e, e, np.zeros(0))

    def rows(self, after, until) -> slice:
        """Rows of the periods with rebalance date in (after, until] (after None: from the start)."""
        lo = 0 if after is None else int(np.searchsorted(self.periods, np.datetime64(after, "D"), side="right"))
        return slice(lo, int(np.searchsorted(self.periods, np.datetime64(until, "D"), side="right")))

    def series(self, after, until) -> pd.Series:
        sel = self.rows(after, until)
        return pd.Series(self.values[sel], index=pd.DatetimeIndex(self.dates[sel])).sort_index()


def join_info(union: int, kept: int, missing: dict[str, int]) -> dict:
    """The inner join's bookkeeping: days any child has, days every child has, and per child how
    many of the union's days it lacks (why the join lost them: a child on an exchange calendar has
    no weekend days next to a 24/7 child)."""
    return {
        "union_days": union,
        "kept_days": kept,
        "lost_days": union - kept,
        "lost_share": (1 - kept / union) if union else 0.0,
        "missing_by_child": {c: n for c, n in missing.items() if n},
    }


def window_matrix(
    streams: dict[str, ChildStream], names: list[str], after, until, tail: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The children's streams over the periods in (after, until], joined on the days every child
    has, last `tail` days (see `join_window`).

    A child with no row in the window is left out of the join (all NaN in its column): it would
    empty the join for everyone, and the health gate vetoes it. Returns (dates, matrix with one
    column per name, `join_info`).
    """
    parts = {c: streams[c].rows(after, until) for c in names}
    present_children = [c for c in names if parts[c].stop > parts[c].start]
    joined = present_children or names
    dates_by = {c: streams[c].dates[parts[c]] for c in joined}
    for c, ds in dates_by.items():
        if len(ds) > 1 and (np.diff(ds) == np.timedelta64(0, "D")).any():
            dup = ds[1:][np.diff(ds) == np.timedelta64(0, "D")]
            raise ValueError(f"stream {c!r} has duplicated dates: {dup[:3].tolist()}")
    union = np.unique(np.concatenate([dates_by[c] for c in joined])) if joined else np.array([], dtype="datetime64[D]")
    values = np.full((len(union), len(names)), np.nan)
    present = np.zeros((len(union), len(names)), dtype=bool)
    for j, c in enumerate(names):
        if c in joined:
            pos = np.searchsorted(union, dates_by[c])
            values[pos, j] = streams[c].values[parts[c]]
            present[pos, j] = True
    return join_window(union, values, present, names, np.isin(names, joined), tail)


def join_window(
    days: np.ndarray, values: np.ndarray, present: np.ndarray, names: list[str], joined: np.ndarray, tail: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The inner join of a window's children on a day axis where at least one joined child has a
    row: the days every joined child has, last `tail` of them.

    A child's returns on the days the join drops are not lost: they are compounded into its
    return on the next kept day, so each kept row spans the same stretch of time for every child
    (next to an exchange-calendar child, a 24/7 child's Monday row holds its Saturday, Sunday and
    Monday; the exchange child's Monday return already spans them). Kept days with no dropped day
    before them keep their values untouched.
    """
    some = present[:, joined].any(axis=1)
    days, values, present = days[some], values[some], present[some]
    every = present[:, joined].all(axis=1)
    union, kept = len(days), int(every.sum())
    lacking = (~present).sum(axis=0)
    info = join_info(union, kept, {names[j]: int(lacking[j]) for j in np.flatnonzero(joined)})
    rows = np.flatnonzero(every)
    matrix = values[rows]
    starts = np.concatenate([[0], rows[:-1] + 1]) if len(rows) else rows
    for i in np.flatnonzero(rows > starts):  # kept rows after dropped days
        gap = slice(starts[i], rows[i])
        held = present[gap].any(axis=0) & joined
        if held.any():
            growth = np.prod(np.where(present[gap][:, held], 1.0 + values[gap][:, held], 1.0), axis=0)
            matrix[i, held] = growth * (1.0 + matrix[i, held]) - 1.0
    matrix[:, ~joined] = np.nan
    if tail:
        rows, matrix = rows[-tail:], matrix[-tail:]
    return days[rows], matrix, info


def outer_matrix(streams: dict[str, ChildStream], names: list[str], after, until) -> tuple[np.ndarray, np.ndarray]:
    """Every day any child has in the periods (after, until], NaN where a child has none (earns 0)."""
    parts = {c: streams[c].rows(after, until) for c in names}
    dates = (
        np.unique(np.concatenate([streams[c].dates[parts[c]] for c in names]))
        if names
        else np.array([], dtype="datetime64[D]")
    )
    matrix = np.full((len(dates), len(names)), np.nan)
    for j, c in enumerate(names):
        ds = streams[c].dates[parts[c]]
        if len(ds):
            matrix[np.searchsorted(dates, ds), j] = streams[c].values[parts[c]]
    return dates, matrix


class AlignedStreams:
    """The children's streams on one day axis, built once per step: a window is then a slice.

    `window` and `outer` return exactly what `window_matrix` and `outer_matrix` return (the same
    values, copied, never recomputed) without re-joining the children's dates on every rebalance
    date. It needs each day to belong to the same holding period in every child (true for streams
    stored by one calendar); `of` returns None otherwise and the caller keeps the per-date join.
    """

    def __init__(
        self, days: np.ndarray, periods: np.ndarray, values: np.ndarray, present: np.ndarray, names: list[str]
    ):
        self.days, self.periods, self.values, self.present, self.names = days, periods, values, present, names
        self._iso: np.ndarray | None = None

    @classmethod
    def of(cls, streams: dict[str, ChildStream], names: list[str]) -> AlignedStreams | None:
        for c in names:
            ds = np.sort(streams[c].dates)
            if len(ds) > 1 and (np.diff(ds) == np.timedelta64(0, "D")).any():
                dup = ds[1:][np.diff(ds) == np.timedelta64(0, "D")]
                raise ValueError(f"stream {c!r} has duplicated dates: {dup[:3].tolist()}")
        parts = [streams[c].dates for c in names]
        days = np.unique(np.concatenate(parts)) if parts else np.array([], dtype="datetime64[D]")
        values = np.full((len(days), len(names)), np.nan)
        present = np.zeros((len(days), len(names)), dtype=bool)
        periods = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[D]")
        for j, c in enumerate(names):
            st = streams[c]
            pos = np.searchsorted(days, st.dates)
            known = ~np.isnat(periods[pos])
            if (periods[pos][known] != st.periods[known]).any():
                return None  # a day in different holding periods across children: no common axis
            periods[pos] = st.periods
            values[pos, j] = st.values
            present[pos, j] = True
        if len(periods) > 1 and (np.diff(periods) < np.timedelta64(0, "D")).any():
            return None  # periods must run with the days for a window to be a slice
        return cls(days, periods, values, present, list(names))

    def _rows(self, after, until) -> slice:
        lo = 0 if after is None else int(np.searchsorted(self.periods, np.datetime64(after, "D"), side="right"))
        return slice(lo, int(np.searchsorted(self.periods, np.datetime64(until, "D"), side="right")))

    def window(self, after, until, tail: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """`window_matrix(streams, names, after, until, tail)`."""
        sel = self._rows(after, until)
        present = self.present[sel]
        joined = np.asarray(present.any(axis=0), dtype=bool)
        if not joined.any():
            joined = np.ones(present.shape[1], dtype=bool)  # nobody has a row: the join over everyone is empty
        return join_window(self.days[sel], self.values[sel], present, self.names, joined, tail)

    def iso(self, days: np.ndarray) -> list[str]:
        """`iso_days(days)` for days of this axis (a window's): each day's text is formatted once per
        step and looked up, instead of once per window that holds it (about 250 windows)."""
        if self._iso is None:
            self._iso = np.array(iso_days(self.days), dtype=object)
        return self._iso[np.searchsorted(self.days, days)].tolist()

    def outer(self, after, until) -> tuple[np.ndarray, np.ndarray]:
        """`outer_matrix(streams, names, after, until)`."""
        sel = self._rows(after, until)
        rows = np.flatnonzero(self.present[sel].any(axis=1))
        matrix = np.where(self.present[sel][rows], self.values[sel][rows], np.nan)
        return self.days[sel][rows], matrix


class SuccessHistory:
    """A child's optimisation outcomes by date: the share of successes in any window, in O(log n)."""

    def __init__(self, outcomes: list[tuple]):
        outcomes = sorted(outcomes)
        self.days = np.array([np.datetime64(d, "D") for d, _ in outcomes], dtype="datetime64[D]")
        self.cum = np.concatenate([[0], np.cumsum([1 if ok else 0 for _, ok in outcomes])])

    def share(self, after, until) -> float:
        """Share of successful optimisations dated in (after, until]; NaN when there is none."""
        lo = int(np.searchsorted(self.days, np.datetime64(after, "D"), side="right"))
        hi = int(np.searchsorted(self.days, np.datetime64(until, "D"), side="right"))
        return float((self.cum[hi] - self.cum[lo]) / (hi - lo)) if hi > lo else float("nan")


NET_COLUMNS = ["symbol", "net_weight", "long_weight", "short_weight", "n_paths", "contributors"]


@dataclass
class ChildPaths:
    """A child's holdings over a run's dates as paths (CONTRIBUTION_COLUMNS): one entry per row, the
    rows of a date together, dates ascending; `day` is the position of the row's date in the run."""

    day: np.ndarray
    symbol: list[str]
    path: list[str]
    sleeve: list[str]
    atom_id: list[str]
    direction: list[str]
    path_weight: np.ndarray
    sleeve_weight: np.ndarray
    contribution: np.ndarray

    @classmethod
    def of_sleeve(
        cls, sleeve: str, day: np.ndarray, atom_ids: list[str], symbols: list[str], direction: list[str], weights
    ) -> ChildPaths:
        """A sleeve's weights as paths for every date at once: path = sleeve, path weight 1, signed by
        direction (a date's direction is its first row's)."""
        day = np.asarray(day, dtype=np.int64)
        n = len(day)
        first = np.r_[True, day[1:] != day[:-1]] if n else np.zeros(0, dtype=bool)
        upper = [d.upper() for d in direction]
        starts = np.flatnonzero(first)
        per_row = np.repeat(starts, np.diff(np.r_[starts, n])) if n else np.zeros(0, dtype=np.int64)
        dirs = [upper[i] for i in per_row.tolist()]
        w = np.asarray(weights, dtype=float)
        sign = np.where(np.array([d == "SHORT" for d in dirs], dtype=bool), -1.0, 1.0) if n else np.zeros(0)
        return cls(day, list(symbols), [sleeve] * n, [sleeve] * n, list(atom_ids), dirs, np.ones(n), w, sign * w)


def flatten_paths(meta: str, weights: np.ndarray, children: list[ChildPaths | None]) -> tuple[dict, dict]:
    """`flatten` then `net_by_symbol` for every date of a run at once, on arrays, with the numbers of
    a per-date loop bit for bit (tested against one): `weights` is (dates x children) in manifest
    order, `children[j]` the j-th child's paths (None: no holdings). Both results carry `day` (the
    date's position) and keep a date's rows in the per-date order: contributions by child then
    row, net rows by |net| descending.

    Why: a per-date Python loop over dicts of lists cost ~0.3 ms per lens and date (16,170 of them
    in a full history); here the sums are `np.add.at` (sequential in row order, as the loop added)."""
    parts = []
    for j, child in enumerate(children):
        if child is None or len(child.day) == 0:
            continue
        w = weights[child.day, j]
        keep = np.flatnonzero(w != 0)
        parts.append((j, child, keep, w[keep]))
    if not parts:
        empty_c: dict = {"day": np.zeros(0, dtype=np.int64), **{c: [] for c in CONTRIBUTION_COLUMNS}}
        empty_n: dict = {"day": np.zeros(0, dtype=np.int64), **{c: [] for c in NET_COLUMNS}}
        return empty_c, empty_n
    day = np.concatenate([c.day[k] for _, c, k, _ in parts])
    child_of = np.concatenate([np.full(len(k), j) for j, _, k, _ in parts])
    order = np.lexsort((child_of, day))  # by date, then child; a child's rows keep their order (stable)
    w = np.concatenate([wk for *_, wk in parts])[order]

    def take(column: str) -> list:
        kept = [np.asarray(getattr(c, column), dtype=object)[k] for _, c, k, _ in parts]
        return np.concatenate(kept)[order].tolist()

    contribution = np.concatenate([c.contribution[k] for _, c, k, _ in parts])[order] * w
    path_weight = np.concatenate([c.path_weight[k] for _, c, k, _ in parts])[order] * w
    contributions = {
        "day": day[order],
        "symbol": take("symbol"),
        "path": [f"{meta}/{p}" for p in take("path")],
        "sleeve": take("sleeve"),
        "atom_id": take("atom_id"),
        "direction": take("direction"),
        "path_weight": path_weight.tolist(),
        "sleeve_weight": np.concatenate([c.sleeve_weight[k] for _, c, k, _ in parts])[order].tolist(),
        "contribution": contribution.tolist(),
    }
    # net per (date, symbol), groups numbered in order of first appearance
    row_day = contributions["day"]
    codes: dict[str, int] = {}
    sym = np.array([codes.setdefault(x, len(codes)) for x in contributions["symbol"]], dtype=np.int64)
    key = row_day * len(codes) + sym
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    group = rank[inverse.reshape(-1)]
    n_groups = len(first)
    net, long_, short = np.zeros(n_groups), np.zeros(n_groups), np.zeros(n_groups)
    np.add.at(net, group, contribution)
    pos, neg = contribution > 0, contribution < 0
    np.add.at(long_, group[pos], contribution[pos])
    np.add.at(short, group[neg], -contribution[neg])
    n_paths = np.bincount(group, minlength=n_groups)
    first_row = np.sort(first)  # a group's first row, groups in order of appearance
    group_day = row_day[first_row]
    # contributors: a symbol's paths, largest |contribution| first (ties in row order)
    by_size = np.lexsort((np.arange(len(group)), -np.abs(contribution), group))
    paths, values = contributions["path"], contributions["contribution"]
    texts = [f"{paths[i]} {values[i]:+.4f}" for i in by_size.tolist()]
    bounds = np.r_[0, np.cumsum(n_paths)].tolist()
    contributors = ["; ".join(texts[bounds[g] : bounds[g + 1]]) for g in range(n_groups)]
    out_order = np.lexsort((np.arange(n_groups), -np.abs(net), group_day)).tolist()
    symbols = [contributions["symbol"][i] for i in first_row.tolist()]
    net_l, long_l, short_l, n_l = net.tolist(), long_.tolist(), short.tolist(), n_paths.tolist()
    flat = {
        "day": group_day[out_order],
        "symbol": [symbols[g] for g in out_order],
        "net_weight": [net_l[g] for g in out_order],
        "long_weight": [long_l[g] for g in out_order],
        "short_weight": [short_l[g] for g in out_order],
        "n_paths": [n_l[g] for g in out_order],
        "contributors": [contributors[g] for g in out_order],
    }
    return contributions, flat


def tree_rows(
    meta: str, names: list[str], weights: np.ndarray, labels: np.ndarray, refs: dict[str, str]
) -> dict[str, list]:
    """`cluster_tree` on column lists: meta -> correlation clusters of children -> children."""
    out: dict[str, list] = {
        "node": [meta],
        "parent": [""],
        "level": [0],
        "kind": ["meta"],
        "weight": [float(weights.sum())],
        "intra_weight": [1.0],
        "ref": [""],
    }
    for label in sorted(set(labels.tolist())):
        members = [i for i, lab in enumerate(labels) if lab == label]
        cw = float(weights[members].sum())
        node = f"{meta}/cluster_{label}"
        for k, v in (
            ("node", node),
            ("parent", meta),
            ("level", 1),
            ("kind", "cluster"),
            ("weight", cw),
            ("intra_weight", 1.0),
            ("ref", ""),
        ):
            out[k].append(v)
        for i in members:
            for k, v in (
                ("node", names[i]),
                ("parent", node),
                ("level", 2),
                ("kind", "child"),
                ("weight", float(weights[i])),
                ("intra_weight", float(weights[i] / cw) if cw > 0 else 0.0),
                ("ref", refs.get(names[i], "")),
            ):
                out[k].append(v)
    return out
