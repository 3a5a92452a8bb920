"""Out-of-sample holding-period simulation: weights decided at D earn returns strictly after D.

Positions live in synthetic-long space (a short atom holds the stream -min(r, 1)), so every
weight is >= 0, a short loses at most its weight, and weights drift with their own streams
between rebalances. Friction = rate x traded notional sum |w_target - w_drifted|, charged on the
first day of the holding period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class PeriodResult:
    daily: pd.DataFrame  # index date; gross_return, cost, net_return, turnover
    end_weights: pd.Series  # drifted weights at the end of the period (sum 1, or empty in cash)


def drift(weights: pd.Series, streams: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Daily portfolio returns of buy-and-hold `weights` over `streams`, and the drifted end weights."""
    if weights.empty or weights.sum() <= 0 or streams.empty:
        return pd.Series(0.0, index=streams.index), weights
    s = streams[weights.index].fillna(0.0).to_numpy()  # a missing price holds its value for P&L
    values = weights.to_numpy() * np.cumprod(1.0 + s, axis=0)
    total = values.sum(axis=1)
    prev = np.concatenate([[weights.sum()], total[:-1]])
    # Once everything is wiped out (a short at -100%), the book is worth 0 and earns 0: not 0/0.
    with np.errstate(invalid="ignore", divide="ignore"):
        port = pd.Series(np.where(prev > 0, total / prev - 1.0, 0.0), index=streams.index)
    end = pd.Series(values[-1] / total[-1], index=weights.index) if total[-1] > 0 else weights * 0.0
    return port, end


def turnover(target: pd.Series, current: pd.Series | None) -> float:
    """Traded notional sum |target - current|; from cash (current None) it is sum(target)."""
    if current is None or current.empty:
        return float(target.abs().sum())
    idx = target.index.union(current.index)
    return float((target.reindex(idx, fill_value=0.0) - current.reindex(idx, fill_value=0.0)).abs().sum())


def holding_period(weights: pd.Series, streams: pd.DataFrame, traded: float, rate: float) -> PeriodResult:
    """Returns over one holding period: `streams` must already be restricted to (D_prev, D]."""
    gross, end = drift(weights, streams)
    cost = pd.Series(0.0, index=streams.index)
    turn = pd.Series(0.0, index=streams.index)
    if len(streams):
        cost.iloc[0] = rate * traded
        turn.iloc[0] = traded
    net = (1.0 + gross) * (1.0 - cost) - 1.0
    daily = pd.DataFrame({"gross_return": gross, "cost": cost, "net_return": net, "turnover": turn})
    return PeriodResult(daily, end)
