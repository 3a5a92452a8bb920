"""Returns-stage health policy (domain-spec §1.5): what may enter a covariance matrix.

Returns are simple close-to-close and never forward-filled: a missing close makes the return
missing, and the final matrix keeps only dates where every kept symbol traded (dense
intersection). Every candidate gets one verdict row, kept or excluded with the reason, the
offending value and the threshold, so "why is X not in the matrix on D" is one SQL query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant_assets.manifest import HealthPolicy

INSUFFICIENT_HISTORY = "insufficient_history"  # not yet eligible: not counted against coverage


@dataclass
class HealthResult:
    returns: pd.DataFrame  # dense, dates x kept symbols
    verdicts: pd.DataFrame  # symbol, status, reason, value, threshold, n_obs

    @property
    def coverage(self) -> float:
        """Share of eligible symbols (enough history) that passed the data-quality filters."""
        eligible = self.verdicts[self.verdicts["reason"] != INSUFFICIENT_HISTORY]
        if eligible.empty:
            return float("nan")
        return float((eligible["status"] == "kept").mean())


def apply_health_policy(closes: pd.DataFrame, policy: HealthPolicy, min_history: int) -> HealthResult:
    """closes: dates x symbols (NaN where no trade). Returns the clean matrix and one verdict per symbol."""
    rets = closes.pct_change(fill_method=None).iloc[1:] if len(closes) else closes.iloc[0:0]
    rows = []
    kept: list[str] = []
    for sym in closes.columns:
        col = rets[sym]
        listed = col.loc[col.first_valid_index():] if col.first_valid_index() is not None else col.iloc[0:0]
        n_obs = int(listed.notna().sum())
        values = listed.dropna().to_numpy()
        # Missing share counts missing *closes* since listing (one gap = one missing day, even
        # though it voids two returns).
        first_close = closes[sym].first_valid_index()
        traded = closes[sym].loc[first_close:] if first_close is not None else closes[sym].iloc[0:0]
        missing_share = float(traded.isna().mean()) if len(traded) else 1.0
        verdict = ("kept", "ok", np.nan, np.nan)
        if first_close is None:
            verdict = ("excluded", "no_prices", 0.0, float(min_history))
        elif n_obs < min_history:
            verdict = ("excluded", INSUFFICIENT_HISTORY, float(n_obs), float(min_history))
        elif np.abs(values).max() > policy.toxic_abs_return:
            verdict = ("excluded", "toxic_move", float(np.abs(values).max()), policy.toxic_abs_return)
        elif values.std(ddof=0) == 0.0:
            verdict = ("excluded", "zero_variance", 0.0, 0.0)
        elif missing_share > policy.max_missing_share:
            verdict = ("excluded", "missing_data", missing_share, policy.max_missing_share)
        status, reason, value, threshold = verdict
        if status == "kept":
            kept.append(sym)
        rows.append({"symbol": sym, "status": status, "reason": reason, "value": value,
                     "threshold": threshold, "n_obs": n_obs})
    dense = rets[kept].dropna(how="any") if kept else rets.iloc[:, 0:0].iloc[0:0]
    verdicts = pd.DataFrame(rows, columns=["symbol", "status", "reason", "value", "threshold", "n_obs"])
    return HealthResult(dense, verdicts)
