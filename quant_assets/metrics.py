"""Performance metrics on a stitched daily return series (never averaged window annualisations)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def performance(returns: pd.Series, annualisation: int = 252) -> dict[str, float]:
    """Total return, CAGR, annualised volatility, Sharpe (rf = 0) and compounded max drawdown."""
    r = pd.Series(returns, dtype=float).dropna()
    n = len(r)
    if n == 0:
        return {"days": 0, "total_return": 0.0, "cagr": float("nan"), "ann_vol": float("nan"),
                "sharpe": float("nan"), "max_drawdown": 0.0}
    wealth = np.cumprod(1.0 + r.to_numpy())
    total = float(wealth[-1] - 1.0)
    cagr = float(wealth[-1] ** (annualisation / n) - 1.0) if wealth[-1] > 0 else -1.0
    vol = float(r.std(ddof=1) * np.sqrt(annualisation)) if n > 1 else float("nan")
    sharpe = float(r.mean() * annualisation / vol) if n > 1 and vol > 0 else float("nan")
    peak = np.maximum.accumulate(np.concatenate([[1.0], wealth]))
    drawdown = float((np.concatenate([[1.0], wealth]) / peak - 1.0).min())
    return {"days": n, "total_return": total, "cagr": cagr, "ann_vol": vol, "sharpe": sharpe,
            "max_drawdown": drawdown}
