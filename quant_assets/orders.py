"""Portfolio state and drift: from the last implemented weights to the orders that reach the target.

Weights are signed net weights of physical symbols. Drift = target - implemented; a drift below
`min_trade` is dust (skipped), below 1e-4 it is noise (ignored). Actions follow the position's
side, so a short is never mistaken for a long (domain-spec §10.18): growing a short is SELL_SHORT,
shrinking it BUY_TO_COVER, and crossing zero is two legs (close, then open the other side).
"""

from __future__ import annotations

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
    symbols = implemented.index.union(target.index)
    cur = implemented.reindex(symbols, fill_value=0.0)
    tgt = target.reindex(symbols, fill_value=0.0)
    rows = []
    for sym in symbols:
        drift = float(tgt[sym] - cur[sym])
        if abs(drift) < NOISE:
            continue
        status = "EXECUTE" if abs(drift) >= min_trade else "SKIP"
        for action, size in _legs(float(cur[sym]), float(tgt[sym])):
            rows.append({"symbol": sym, "implemented": float(cur[sym]), "target": float(tgt[sym]), "drift": drift,
                         "action": action, "size": size, "status": status})
    out = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    return out.sort_values(["status", "size"], ascending=[True, False]).reset_index(drop=True)


def required_turnover(implemented: pd.Series, target: pd.Series) -> float:
    """One-way turnover to reach the target: sum |drift| / 2."""
    symbols = implemented.index.union(target.index)
    return float((target.reindex(symbols, fill_value=0.0) - implemented.reindex(symbols, fill_value=0.0)).abs().sum() / 2)
