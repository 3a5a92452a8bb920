"""Portfolio state and drift: from the last implemented weights to the orders that reach the target.

Weights are signed net weights of physical symbols. Drift = target - implemented; a drift below
`min_trade` is dust (skipped), below 1e-4 it is noise (ignored). Actions follow the position's
side, so a short is never mistaken for a long: growing a short is SELL_SHORT,
shrinking it BUY_TO_COVER, and crossing zero is two legs (close, then open the other side).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NOISE = 1e-4
ORDER_COLUMNS = ["symbol", "implemented", "target", "drift", "action", "size", "status"]


def _legs(implemented: float, target: float) -> list[tuple[str, float]]:
    if implemented >= 0 and target >= 0:
        return [("BUY" if target > implemented else "SELL", abs(target - implemented))]
    if implemented <= 0 and target <= 0:
        return [("SELL_SHORT" if target < implemented else "BUY_TO_COVER", abs(target - implemented))]
    if implemented > 0 > target:  # long -> short
        return [("SELL", implemented), ("SELL_SHORT", -target)]
    return [("BUY_TO_COVER", -implemented), ("BUY", target)]  # short -> long


def rebalance_orders(implemented: pd.Series, target: pd.Series, min_trade: float = 0.01) -> pd.DataFrame:
    """One row per order leg: EXECUTE when the symbol's |drift| >= min_trade, else SKIP (dust)."""
    return pd.DataFrame(
        order_rows(
            dict(zip(implemented.index, implemented.to_numpy(float))),
            dict(zip(target.index, target.to_numpy(float))),
            min_trade,
        ),
        columns=ORDER_COLUMNS,
    )


def order_rows(implemented: dict[str, float], target: dict[str, float], min_trade: float = 0.01) -> list[dict]:
    """`rebalance_orders` on plain mappings: the legs, EXECUTE before SKIP, larger legs first."""
    rows = []
    for sym in sorted(set(implemented) | set(target)):
        cur, tgt = implemented.get(sym, 0.0), target.get(sym, 0.0)
        drift = float(tgt - cur)
        if abs(drift) < NOISE:
            continue
        status = "EXECUTE" if abs(drift) >= min_trade else "SKIP"
        for action, size in _legs(float(cur), float(tgt)):
            rows.append(
                {
                    "symbol": sym,
                    "implemented": float(cur),
                    "target": float(tgt),
                    "drift": drift,
                    "action": action,
                    "size": size,
                    "status": status,
                }
            )
    return sorted(rows, key=lambda r: (r["status"], -r["size"]))


def required_turnover(implemented: pd.Series, target: pd.Series) -> float:
    """One-way turnover to reach the target: sum |drift| / 2."""
    return turnover_of(
        dict(zip(implemented.index, implemented.to_numpy(float))), dict(zip(target.index, target.to_numpy(float)))
    )


def turnover_of(implemented: dict[str, float], target: dict[str, float]) -> float:
    symbols = sorted(set(implemented) | set(target))
    return float(np.abs(np.array([target.get(s, 0.0) - implemented.get(s, 0.0) for s in symbols])).sum() / 2)
