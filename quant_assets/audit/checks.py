"""Invariants behind the asset checks, as pure functions: each returns None or what is wrong.

Kept apart from the assets so tests can feed them bad frames and see them fail: a check that
cannot fail is a defect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOL = 1e-6
RETURN_BOUNDS = (-1.0, 10.0)


def sleeve_weights_problem(w: pd.DataFrame) -> str | None:
    """Atom weights finite, >= 0, summing to 1 (or no rows: the sleeve sits in cash);
    net weights signed by direction, so gross sum |net| equals sum weight."""
    if w.empty:
        return None
    return sleeve_weight_arrays_problem(
        w["weight"].to_numpy(dtype=float),
        w["net_weight"].to_numpy(dtype=float),
        w["direction"].astype(str).tolist(),
        w["symbol"].tolist(),
    )


def sleeve_weight_arrays_problem(
    weight: np.ndarray, net: np.ndarray, directions: list[str], symbols: list[str]
) -> str | None:
    """`sleeve_weights_problem` on the columns of one date's weights."""
    if len(weight) == 0:
        return None
    if not (np.isfinite(weight).all() and np.isfinite(net).all()):
        return "non-finite weights"
    if (weight < -TOL).any():
        return f"negative atom weight {weight.min():.6g}"
    if abs(weight.sum() - 1.0) > TOL:
        return f"atom weights sum to {weight.sum():.8f}, not 1"
    upper = [d.upper() for d in directions]
    unknown = sorted(set(upper) - {"LONG", "SHORT"})
    if unknown:
        return f"unknown directions {unknown}"
    sign = np.where(np.array(upper) == "SHORT", -1.0, 1.0)
    wrong = [s for s, bad in zip(symbols, np.abs(net - sign * weight) > TOL) if bad]
    if wrong:
        return f"net weight sign/size disagrees with direction for {wrong[:5]}"
    return None


def meta_weights_problem(
    weights: pd.Series, lower: float, upper: float, vetoed: frozenset[str] | set[str] = frozenset()
) -> str | None:
    """Finite, summing to 1, vetoed children at exactly 0, the others within the bounds (the cap
    relaxed to 1/n when vetoes leave too few children to reach 1 under it)."""
    return meta_weight_arrays_problem(weights.to_numpy(dtype=float), list(weights.index), lower, upper, vetoed)


def meta_weight_arrays_problem(
    w: np.ndarray, names: list[str], lower: float, upper: float, vetoed: frozenset[str] | set[str] = frozenset()
) -> str | None:
    """`meta_weights_problem` on one date's weights in children order."""
    if not np.isfinite(w).all():
        return "non-finite meta weights"
    if abs(w.sum() - 1.0) > TOL:
        return f"meta weights sum to {w.sum():.8f}, not 1"
    is_vetoed = np.array([c in vetoed for c in names], dtype=bool)
    if not (~is_vetoed).any():
        return None  # every child vetoed: equal-weight fallback, flagged in the status
    leaked = [(c, x) for c, x, v in zip(names, w, is_vetoed) if v and abs(x) > TOL]
    if leaked:
        return "vetoed children hold weight: " + ", ".join(f"{k}={x:.4f}" for k, x in leaked)
    upper = max(upper, 1.0 / int((~is_vetoed).sum()))
    low = [(c, x) for c, x, v in zip(names, w, is_vetoed) if not v and x < lower - TOL]
    high = [(c, x) for c, x, v in zip(names, w, is_vetoed) if not v and x > upper + TOL]
    if low or high:
        return f"outside [{lower}, {upper}]: " + ", ".join(f"{k}={x:.4f}" for k, x in low + high)
    return None


def returns_problem(values: pd.Series | np.ndarray, label: str = "return") -> str | None:
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).all():
        return f"non-finite {label}s"
    lo, hi = RETURN_BOUNDS
    bad = v[(v < lo) | (v > hi)]
    if len(bad):
        return f"{len(bad)} {label}s outside [{lo}, {hi}] (e.g. {bad[0]:.4g})"
    return None


def _column(rows, name: str) -> np.ndarray:
    """A column of a frame or of a dict of lists, as an array."""
    return np.asarray(rows[name])


def flattened_problem(flat, contributions, physical: set[str]) -> str | None:
    """Physical symbols only (listed on the date), finite, and contributions conserved.

    `flat` and `contributions`: frames or dicts of column lists."""
    contrib = _column(contributions, "contribution").astype(float)
    if len(flat["symbol"]) == 0:
        leaked = float(np.abs(contrib).sum())
        return f"no flattened weights but path contributions total {leaked:.3g}" if leaked > 1e-9 else None
    unknown = sorted(set(flat["symbol"]) - physical)
    if unknown:
        return f"symbols not in prices: {unknown[:5]}"
    net, long_, short = (_column(flat, c).astype(float) for c in ("net_weight", "long_weight", "short_weight"))
    if not (np.isfinite(net).all() and np.isfinite(long_).all() and np.isfinite(short).all()):
        return "non-finite flattened weights"
    gap = np.abs(long_ - short - net).max()
    if gap > 1e-9:
        return f"net != long - short by {gap:.3g}"
    total = contrib.sum() - net.sum()
    if abs(total) > 1e-9:
        return f"sum of path contributions differs from sum of net weights by {total:.3g}"
    # Conservation: gross of the paths = gross of the net view + what long/short netting cancelled.
    netted_away = 2.0 * np.minimum(long_, short).sum()
    gap = np.abs(contrib).sum() - (np.abs(net).sum() + netted_away)
    if abs(gap) > 1e-9:
        return f"path gross != net gross + netted-away gross (gap {gap:.3g})"
    return None


def sign_problem(contributions, sleeve_directions: dict[str, str]) -> str | None:
    """Directional sign test: every path keeps its sleeve's direction, and its sign follows it
    (a short sleeve that emits a long physical weight lost its direction on the way)."""
    for path, atom, direction, sleeve in zip(
        contributions["path"], contributions["atom_id"], contributions["direction"], contributions["sleeve"]
    ):
        expected = sleeve_directions.get(sleeve, "?").upper()
        if direction != expected:
            return f"{path}: atom {atom} is {direction} but sleeve {sleeve} is {expected}"
    for path, atom, direction, c in zip(
        contributions["path"], contributions["atom_id"], contributions["direction"], contributions["contribution"]
    ):
        if (direction == "SHORT" and c > 0) or (direction == "LONG" and c < 0):
            return f"{path}: {direction} atom {atom} has contribution {c:+.6f}"
    return None


def synthetic_stream_problem(streams: pd.DataFrame, raw: pd.DataFrame, direction: str) -> str | None:
    """Short atoms must see exactly -min(r, 1) of the raw returns, long atoms exactly r (atol 0)."""
    raw = np.asarray(raw, dtype=float)
    expected = raw if direction.lower() == "long" else -np.minimum(raw, 1.0)
    streams = np.asarray(streams, dtype=float)
    if streams.shape != expected.shape or not np.array_equal(streams, expected, equal_nan=True):
        return f"{direction} synthetic streams are not {'r' if direction.lower() == 'long' else '-min(r, 1)'}"
    return None


def coverage_problem(coverage: float, threshold: float) -> str | None:
    if np.isnan(coverage):
        return None  # no eligible symbol yet (young universe): nothing to judge
    if coverage < threshold:
        return f"health coverage {coverage:.2%} below {threshold:.0%}"
    return None
