"""Out-of-sample holding-period simulation: weights decided at D earn returns strictly after D.

Positions live in synthetic-long space (a short atom holds the stream -min(r, 1)), so every
weight is >= 0, a short loses at most its weight, and weights drift with their own streams
between rebalances. Residual weight (1 - sum w) is cash earning 0. Friction = rate x traded
notional sum |w_target - w_drifted|, charged on the first day of the holding period.

Wealth carries across periods (domain-spec §10.4: resetting to 1.0 each window fabricated
+114% windows): pass the previous period's `end_wealth` / `bankrupt` into the next one. Below the
bankruptcy floor (1% of the initial 1.0) the book is liquidated to cash for good (§5, CR-660).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BANKRUPTCY_FLOOR = 0.01  # absolute wealth, i.e. 1% of the initial 1.0
DAILY_COLUMNS = ["gross_return", "cost", "net_return", "turnover", "wealth", "bankrupt"]
_CASH_TOL = 1e-9  # sum(w) within this of 1 counts as fully invested (no float noise from a cash leg)


@dataclass
class PeriodResult:
    daily: pd.DataFrame  # index date; DAILY_COLUMNS (wealth = end-of-day wealth, bankrupt = in cash for good)
    end_weights: pd.Series  # drifted weights at the end of the period (share of wealth; empty in cash)
    end_wealth: float = 1.0  # carry into the next period's start_wealth
    bankrupt: bool = False  # carry into the next period's bankrupt


def _check_weights(weights: pd.Series) -> pd.Series:
    """Weights must be synthetic-long (>= 0): a signed book makes drift divide by a signed sum (§10.18)."""
    w = pd.Series(weights, dtype=float)
    if (w < -1e-12).any():
        raise ValueError(f"negative weights {w[w < -1e-12].to_dict()}: pass shorts as synthetic-long streams "
                         "(-min(r, 1)) with weight >= 0")
    return w.clip(lower=0.0)


def drift(weights: pd.Series, streams: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Daily returns of buy-and-hold `weights` (+ cash 1 - sum w at 0%) over `streams`, and end weights.

    Returns are on the gross book value (positions + cash), never on a signed sum. A gross above 1
    is scaled down to 1 (no leverage). End weights are shares of the end book, so they sum to the
    invested share (1 when fully invested, < 1 when part is cash, 0 after a wipe-out).
    """
    if weights.empty or weights.sum() <= 0 or streams.empty:
        return pd.Series(0.0, index=streams.index), weights
    w = _check_weights(weights)
    gross = float(w.sum())
    cash = 1.0 - gross if gross < 1.0 - _CASH_TOL else 0.0
    if gross > 1.0 + _CASH_TOL:
        w = w / gross
    s = streams[w.index].fillna(0.0).to_numpy()  # a missing price holds its value for P&L
    values = w.to_numpy() * np.cumprod(1.0 + s, axis=0)
    total = values.sum(axis=1) + cash
    prev = np.concatenate([[float(w.sum()) + cash], total[:-1]])
    # Once everything is wiped out (a short at -100%), the book is worth 0 and earns 0: not 0/0.
    with np.errstate(invalid="ignore", divide="ignore"):
        port = pd.Series(np.where(prev > 0, total / np.where(prev > 0, prev, 1.0) - 1.0, 0.0), index=streams.index)
    end = pd.Series(values[-1] / total[-1], index=w.index) if total[-1] > 0 else w * 0.0
    return port, end


def turnover(target: pd.Series, current: pd.Series | None) -> float:
    """Traded notional sum |target - current| (the friction base); from cash (current None) it is sum(target)."""
    if current is None or current.empty:
        return float(target.abs().sum())
    idx = target.index.union(current.index)
    return float((target.reindex(idx, fill_value=0.0) - current.reindex(idx, fill_value=0.0)).abs().sum())


def one_way_turnover(target: pd.Series, current: pd.Series | None) -> float:
    """Reported turnover (§5): sum |w1 - w0| / 2 including the implicit cash leg 1 - sum w.

    From cash, (0.6, 0.4) -> 1.0; (0.5, 0.5) -> (0.6, 0.4) -> 0.1.
    """
    cur_cash = 1.0 if current is None or current.empty else 1.0 - float(current.sum())
    tgt_cash = 1.0 - float(target.sum())
    return (turnover(target, current) + abs(tgt_cash - cur_cash)) / 2.0


def _in_cash(index: pd.Index, wealth: float) -> PeriodResult:
    daily = pd.DataFrame({"gross_return": 0.0, "cost": 0.0, "net_return": 0.0, "turnover": 0.0,
                          "wealth": wealth, "bankrupt": True}, index=index, columns=DAILY_COLUMNS)
    daily = daily.astype({c: float for c in DAILY_COLUMNS[:-1]} | {"bankrupt": bool})
    return PeriodResult(daily, pd.Series(dtype=float), float(wealth), True)


def holding_period(weights: pd.Series, streams: pd.DataFrame, traded: float, rate: float,
                   start_wealth: float = 1.0, bankrupt: bool = False,
                   floor: float = BANKRUPTCY_FLOOR) -> PeriodResult:
    """One holding period: `streams` must already be restricted to (D_prev, D] (no lookahead).

    `traded` is the notional from `turnover(target, drifted_previous)`; `rate` = slippage + commission
    of the asset class. Cost hits the first day. Wealth compounds from `start_wealth`; the first day
    it ends below `floor` the book is sold to cash at that close (the day's loss stands, no friction),
    and every later day, and every later period started with `bankrupt=True`, earns exactly 0.
    """
    if bankrupt or start_wealth < floor:
        return _in_cash(streams.index, start_wealth)
    gross, end = drift(weights, streams)
    cost = pd.Series(0.0, index=streams.index)
    turn = pd.Series(0.0, index=streams.index)
    if len(streams):
        cost.iloc[0] = rate * traded
        turn.iloc[0] = traded
    net = (1.0 + gross) * (1.0 - cost) - 1.0
    wealth = start_wealth * np.cumprod(1.0 + net.to_numpy())
    broke = np.flatnonzero(wealth < floor)
    flag = np.zeros(len(streams), dtype=bool)
    if len(broke):
        k = int(broke[0])  # liquidated at the close of day k: from k+1 on the book is cash
        gross.iloc[k + 1:] = 0.0
        net.iloc[k + 1:] = 0.0
        wealth[k + 1:] = wealth[k]
        flag[k:] = True
        end = pd.Series(dtype=float)
    daily = pd.DataFrame({"gross_return": gross, "cost": cost, "net_return": net, "turnover": turn,
                          "wealth": wealth, "bankrupt": flag}, index=streams.index, columns=DAILY_COLUMNS)
    end_wealth = float(wealth[-1]) if len(wealth) else float(start_wealth)
    return PeriodResult(daily, end, end_wealth, bool(len(broke)))


def _weights_series(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(frame["weight"].to_numpy(float), index=frame["atom_id"].to_numpy()) if len(frame) else \
        pd.Series(dtype=float)


def _between(frame: pd.DataFrame, after, until) -> pd.DataFrame:
    """Rows dated in (after, until]: one holding period."""
    return frame[(frame.index > pd.Timestamp(after)) & (frame.index <= pd.Timestamp(until))]


def rebalance_period(raw: pd.DataFrame, target: pd.DataFrame, previous: pd.DataFrame | None, dates: tuple,
                     direction: str, rate: float, start_wealth: float = 1.0, bankrupt: bool = False,
                     floor: float = 0.01) -> PeriodResult:
    """One out-of-sample period of a rebalanced book, as the sleeve and tournament assets store it.

    raw: physical daily returns (dates x symbols) covering (d2, d]. target / previous: the weights
    decided at d1 / d2 (columns atom_id, symbol, weight). dates = (d2 or None, d1, d). The book
    trades from where `previous` had drifted to by d1 into `target`, then drifts over (d1, d].
    """
    from quant_assets.selection import synthetic_long

    d2, d1, d = dates
    atoms = dict(zip(target["atom_id"], target["symbol"]))
    if previous is not None:
        atoms.update(zip(previous["atom_id"], previous["symbol"]))
    symbols = sorted(set(atoms.values()))
    where = {s: i for i, s in enumerate(symbols)}
    window = _between(raw, d2 if d2 is not None else d1, d).reindex(columns=symbols)  # (d2, d] only
    streams = synthetic_long(window, direction).to_numpy()
    atom_streams = pd.DataFrame(streams[:, [where[s] for s in atoms.values()]], index=window.index,
                                columns=list(atoms))
    current = None
    if previous is not None and d2 is not None:  # where the previous period's weights had drifted to by d1
        _, current = drift(_weights_series(previous), _between(atom_streams, d2, d1))
    w = _weights_series(target)
    return holding_period(w, _between(atom_streams, d1, d), turnover(w, current), rate,
                          start_wealth=start_wealth, bankrupt=bankrupt, floor=floor)
