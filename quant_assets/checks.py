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
    weight = w["weight"].to_numpy(dtype=float)
    net = w["net_weight"].to_numpy(dtype=float)
    if not (np.isfinite(weight).all() and np.isfinite(net).all()):
        return "non-finite weights"
    if (weight < -TOL).any():
        return f"negative atom weight {weight.min():.6g}"
    if abs(weight.sum() - 1.0) > TOL:
        return f"atom weights sum to {weight.sum():.8f}, not 1"
    unknown = sorted(set(w["direction"].str.upper()) - {"LONG", "SHORT"})
    if unknown:
        return f"unknown directions {unknown}"
    sign = np.where(w["direction"].str.upper() == "SHORT", -1.0, 1.0)
    wrong = w.loc[np.abs(net - sign * weight) > TOL, "symbol"].tolist()
    if wrong:
        return f"net weight sign/size disagrees with direction for {wrong[:5]}"
    return None


def meta_weights_problem(weights: pd.Series, lower: float, upper: float,
                         vetoed: frozenset[str] | set[str] = frozenset()) -> str | None:
    """Finite, summing to 1, vetoed children at exactly 0, the others within the bounds (the cap
    relaxed to 1/n when vetoes leave too few children to reach 1 under it)."""
    w = weights.to_numpy(dtype=float)
    if not np.isfinite(w).all():
        return "non-finite meta weights"
    if abs(w.sum() - 1.0) > TOL:
        return f"meta weights sum to {w.sum():.8f}, not 1"
    live = weights.drop(index=[c for c in vetoed if c in weights.index])
    if len(live) == 0:
        return None  # every child vetoed: equal-weight fallback, flagged in the status
    leaked = weights[[c for c in vetoed if c in weights.index]]
    if (leaked.abs() > TOL).any():
        return "vetoed children hold weight: " + ", ".join(f"{k}={v:.4f}" for k, v in leaked.items())
    upper = max(upper, 1.0 / len(live))
    low = live[live < lower - TOL]
    high = live[live > upper + TOL]
    if len(low) or len(high):
        return f"outside [{lower}, {upper}]: " + ", ".join(f"{k}={v:.4f}" for k, v in pd.concat([low, high]).items())
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


def flattened_problem(flat: pd.DataFrame, contributions: pd.DataFrame, physical: set[str]) -> str | None:
    """Physical symbols only (present in the prices snapshot), finite, and contributions conserved."""
    if flat.empty:
        leaked = float(contributions["contribution"].abs().sum()) if len(contributions) else 0.0
        return f"no flattened weights but path contributions total {leaked:.3g}" if leaked > 1e-9 else None
    unknown = sorted(set(flat["symbol"]) - physical)
    if unknown:
        return f"symbols not in prices: {unknown[:5]}"
    if not np.isfinite(flat[["net_weight", "long_weight", "short_weight"]].to_numpy(dtype=float)).all():
        return "non-finite flattened weights"
    gap = (flat["long_weight"] - flat["short_weight"] - flat["net_weight"]).abs().max()
    if gap > 1e-9:
        return f"net != long - short by {gap:.3g}"
    total = contributions["contribution"].sum() - flat["net_weight"].sum()
    if abs(total) > 1e-9:
        return f"sum of path contributions differs from sum of net weights by {total:.3g}"
    # Conservation: gross of the paths = gross of the net view + what long/short netting cancelled.
    netted_away = 2.0 * np.minimum(flat["long_weight"], flat["short_weight"]).sum()
    gap = contributions["contribution"].abs().sum() - (flat["net_weight"].abs().sum() + netted_away)
    if abs(gap) > 1e-9:
        return f"path gross != net gross + netted-away gross (gap {gap:.3g})"
    return None


def sign_problem(contributions: pd.DataFrame, sleeve_directions: dict[str, str]) -> str | None:
    """Directional sign test: every path keeps its sleeve's direction, and its sign follows it
    (a short sleeve that emits a long physical weight lost its direction on the way: §10.9)."""
    if contributions.empty:
        return None
    expected = contributions["sleeve"].map(lambda s: sleeve_directions.get(s, "?").upper())
    lost = contributions[contributions["direction"] != expected]
    if len(lost):
        r = lost.iloc[0]
        return f"{r['path']}: atom {r['atom_id']} is {r['direction']} but sleeve {r['sleeve']} is {expected[lost.index[0]]}"
    flipped = contributions[((contributions["direction"] == "SHORT") & (contributions["contribution"] > 0)) |
                            ((contributions["direction"] == "LONG") & (contributions["contribution"] < 0))]
    if len(flipped):
        r = flipped.iloc[0]
        return f"{r['path']}: {r['direction']} atom {r['atom_id']} has contribution {r['contribution']:+.6f}"
    return None


def synthetic_stream_problem(streams: pd.DataFrame, raw: pd.DataFrame, direction: str) -> str | None:
    """Short atoms must see exactly -min(r, 1) of the raw returns, long atoms exactly r (atol 0)."""
    expected = raw.to_numpy() if direction.lower() == "long" else -np.minimum(raw.to_numpy(), 1.0)
    if streams.shape != expected.shape or not np.array_equal(streams.to_numpy(), expected, equal_nan=True):
        return f"{direction} synthetic streams are not {'r' if direction.lower() == 'long' else '-min(r, 1)'}"
    return None


def coverage_problem(coverage: float, threshold: float) -> str | None:
    if np.isnan(coverage):
        return None  # no eligible symbol yet (young universe): nothing to judge
    if coverage < threshold:
        return f"health coverage {coverage:.2%} below {threshold:.0%}"
    return None
