"""Returns-stage health policy: what may enter a covariance matrix.

Returns are simple close-to-close and never forward-filled: a missing close makes the return
missing, and the final matrix keeps only dates where every kept symbol traded (dense
intersection). Every candidate gets one verdict, kept or excluded with the reason, the offending
value and the threshold, so "why is X not in the matrix on D" is one SQL query.

`judge` is the rule on one window as arrays (what the assets call for every rebalance date);
`apply_health_policy` is the same rule on a closes frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

INSUFFICIENT_HISTORY = "insufficient_history"  # not yet eligible: not counted against coverage
VERDICT_COLUMNS = ["symbol", "status", "reason", "value", "threshold", "n_obs"]


@dataclass
class Verdicts:
    """One window's verdicts, one entry per symbol judged (arrays aligned with `symbols`)."""

    symbols: list[str]
    kept: np.ndarray  # bool
    reason: list[str]
    value: np.ndarray
    threshold: np.ndarray
    n_obs: np.ndarray

    @property
    def coverage(self) -> float:
        """Share of eligible symbols (enough history) that passed the data-quality filters."""
        eligible = np.array([r != INSUFFICIENT_HISTORY for r in self.reason], dtype=bool)
        if not eligible.any():
            return float("nan")
        return float(self.kept[eligible].mean())

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "symbol": self.symbols,
                "status": np.where(self.kept, "kept", "excluded"),
                "reason": self.reason,
                "value": self.value,
                "threshold": self.threshold,
                "n_obs": np.asarray(self.n_obs, dtype=np.int64),
            },
            columns=VERDICT_COLUMNS,
        )


class HealthPolicy(BaseModel):
    """Returns-stage data hygiene. Every exclusion is recorded with its reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    toxic_abs_return: float = Field(5.0, gt=0, description="|daily return| above this marks a symbol toxic")
    max_missing_share: float = Field(0.10, ge=0, le=1)
    max_gap_sessions: int | None = Field(
        1,
        ge=1,
        description="longest run of missing sessions tolerated after a symbol's first close (a longer one, at the "
        "end too, excludes it as `gap`: a halt or a delisting, never bridged by a multi-day return); None = off",
    )
    min_coverage: float = Field(0.5, ge=0, le=1, description="asset check: share of eligible symbols kept")


def simple_returns(closes: np.ndarray) -> np.ndarray:
    """close_t / close_{t-1} - 1 per column (NaN where either close is missing; row 0 NaN)."""
    out = np.full(closes.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = closes[1:] / closes[:-1] - 1
    return out


def judge(
    closes: np.ndarray, returns: np.ndarray, symbols: list[str], policy: HealthPolicy, min_history: int
) -> Verdicts:
    """Verdicts for the columns of one window.

    closes: (sessions, symbols), NaN where no trade; returns: the (sessions - 1) simple returns after
    the first session. Checks in order, the first failure decides: no close at all (no_prices),
    fewer than `min_history` returns (insufficient_history: not yet eligible), a |return| above
    `toxic_abs_return` (toxic_move), a constant series (zero_variance), a run of more than
    `max_gap_sessions` missing sessions after the first close (gap), more than `max_missing_share`
    of the closes since the first one missing (missing_data). The rows are the universe calendar's
    sessions, so a session without a bar is a missing close.
    """
    n = closes.shape[1]
    has_close = ~np.isnan(closes)
    valid = ~np.isnan(returns)
    n_obs = valid.sum(axis=0)
    listed = has_close.any(axis=0)
    first = np.argmax(has_close, axis=0) if len(closes) else np.zeros(n, dtype=np.intp)
    span = closes.shape[0] - first  # closes since the first one
    missing_share = np.where(listed, (span - has_close.sum(axis=0)) / np.maximum(span, 1), 1.0)
    if len(returns):
        abs_max = np.where(valid, np.abs(returns), -np.inf).max(axis=0)
        hi = np.where(valid, returns, -np.inf).max(axis=0)
        lo = np.where(valid, returns, np.inf).min(axis=0)
    else:
        abs_max, hi, lo = np.full(n, -np.inf), np.full(n, -np.inf), np.full(n, np.inf)
    longest_gap = np.zeros(n, dtype=np.int64)
    if policy.max_gap_sessions is not None and (listed & (has_close.sum(axis=0) < span)).any():
        rows = np.arange(closes.shape[0])[:, None]
        last_close = np.maximum.accumulate(np.where(has_close, rows, -1), axis=0)
        longest_gap = np.where(last_close >= 0, rows - last_close, 0).max(axis=0)
    kept = np.zeros(n, dtype=bool)
    reason: list[str] = []
    value, threshold = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(n):
        if not listed[j]:
            r, value[j], threshold[j] = "no_prices", 0.0, float(min_history)
        elif n_obs[j] < min_history:
            r, value[j], threshold[j] = INSUFFICIENT_HISTORY, float(n_obs[j]), float(min_history)
        elif abs_max[j] > policy.toxic_abs_return:
            r, value[j], threshold[j] = "toxic_move", float(abs_max[j]), policy.toxic_abs_return
        elif hi[j] == lo[j]:
            r, value[j], threshold[j] = "zero_variance", 0.0, 0.0
        elif policy.max_gap_sessions is not None and longest_gap[j] > policy.max_gap_sessions:
            r, value[j], threshold[j] = "gap", float(longest_gap[j]), float(policy.max_gap_sessions)
        elif missing_share[j] > policy.max_missing_share:
            r, value[j], threshold[j] = "missing_data", float(missing_share[j]), policy.max_missing_share
        else:
            r, kept[j] = "ok", True
        reason.append(r)
    return Verdicts(list(symbols), kept, reason, value, threshold, n_obs)


@dataclass
class HealthResult:
    returns: pd.DataFrame  # dense, dates x kept symbols
    verdicts: pd.DataFrame  # symbol, status, reason, value, threshold, n_obs
    coverage: float


def apply_health_policy(closes: pd.DataFrame, policy: HealthPolicy, min_history: int) -> HealthResult:
    """closes: dates x symbols (NaN where no trade). Returns the clean matrix and one verdict per symbol."""

    c = closes.to_numpy(dtype=float)
    r = simple_returns(c)[1:] if len(c) else c
    v = judge(c, r, [str(s) for s in closes.columns], policy, min_history)
    rets = pd.DataFrame(r, index=closes.index[1:] if len(c) else closes.index, columns=closes.columns)
    kept = [s for s, k in zip(closes.columns, v.kept) if k]
    dense = rets[kept].dropna(how="any") if kept else rets.iloc[:, 0:0].iloc[0:0]
    return HealthResult(dense, v.frame(), v.coverage)
