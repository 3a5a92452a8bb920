"""Out-of-sample holding-period simulation: weights decided at D earn returns strictly after D.

Positions live in synthetic-long space (a short atom holds the stream -min(r, 1)), so every
weight is >= 0, a short loses at most its weight, and weights drift with their own streams
between rebalances. Residual weight (1 - sum w) is cash earning 0. Friction = rate x traded
notional sum |w_target - w_drifted|, charged on the first day of the holding period.

Wealth carries across periods (resetting to 1.0 each window fabricated
+114% windows): pass the previous period's `end_wealth` / `bankrupt` into the next one. Below the
bankruptcy floor (1% of the initial 1.0) the book is liquidated to cash for good.
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
    """Weights must be synthetic-long (>= 0): a signed book makes drift divide by a signed sum."""
    w = pd.Series(weights, dtype=float)
    _check_array(w.to_numpy(), w.index)
    return w.clip(lower=0.0)


def _require_columns(streams: pd.DataFrame, held, when=None) -> None:
    """A held symbol with no return column would silently earn 0 %: an error naming it (and the date)."""
    missing = [str(s) for s in held if s not in streams.columns]
    if missing:
        at = f" for the period ending {when}" if when is not None else ""
        raise ValueError(
            f"weights on {missing[:5]} but no returns for them{at}: every held symbol needs a return "
            "stream (a price missing on a day holds its value; a symbol missing altogether is an error)"
        )


def _check_array(w: np.ndarray, labels=None) -> np.ndarray:
    bad = w < -1e-12
    if bad.any():
        names = list(labels) if labels is not None else list(range(len(w)))
        raise ValueError(
            f"negative weights {dict((names[i], float(w[i])) for i in np.flatnonzero(bad))}: pass shorts as "
            "synthetic-long streams (-min(r, 1)) with weight >= 0"
        )
    return np.clip(w, 0.0, None)


def drift_array(w: np.ndarray, streams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`drift` on arrays: w (atoms,), streams (days x atoms, NaN = price missing: holds its value).

    Returns the book's daily returns and its end weights (shares of the end book).
    """
    n_days = streams.shape[0]
    w = _check_array(np.asarray(w, dtype=float))  # negative weights raise whatever their sum
    if len(w) == 0 or w.sum() <= 0 or n_days == 0:
        return np.zeros(n_days), w
    gross = float(w.sum())
    cash = 1.0 - gross if gross < 1.0 - _CASH_TOL else 0.0
    if gross > 1.0 + _CASH_TOL:
        w = w / gross
    s = np.where(np.isnan(streams), 0.0, streams)
    values = w * np.cumprod(1.0 + s, axis=0)
    total = values.sum(axis=1) + cash
    prev = np.concatenate([[float(w.sum()) + cash], total[:-1]])
    # Once everything is wiped out (a short at -100%), the book is worth 0 and earns 0: not 0/0.
    with np.errstate(invalid="ignore", divide="ignore"):
        port = np.where(prev > 0, total / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)
    end = values[-1] / total[-1] if total[-1] > 0 else w * 0.0
    return port, end


def drift(weights: pd.Series, streams: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Daily returns of buy-and-hold `weights` (+ cash 1 - sum w at 0%) over `streams`, and end weights.

    Returns are on the gross book value (positions + cash), never on a signed sum. A gross above 1
    is scaled down to 1 (no leverage). End weights are shares of the end book, so they sum to the
    invested share (1 when fully invested, < 1 when part is cash, 0 after a wipe-out).
    """
    w = _check_weights(weights)  # negative weights raise whatever their sum (a lone short too)
    if w.empty or w.sum() <= 0 or streams.empty:
        return pd.Series(0.0, index=streams.index), weights
    _require_columns(streams, w.index)
    port, end = drift_array(w.to_numpy(), streams[w.index].to_numpy(dtype=float))
    return pd.Series(port, index=streams.index), pd.Series(end, index=w.index)


def turnover(target: pd.Series, current: pd.Series | None) -> float:
    """Traded notional sum |target - current| (the friction base); from cash (current None) it is sum(target)."""
    if current is None or current.empty:
        return float(target.abs().sum())
    idx = target.index.union(current.index)
    return float((target.reindex(idx, fill_value=0.0) - current.reindex(idx, fill_value=0.0)).abs().sum())


def one_way_turnover(target: pd.Series, current: pd.Series | None) -> float:
    """Reported turnover: sum |w1 - w0| / 2 including the implicit cash leg 1 - sum w.

    From cash, (0.6, 0.4) -> 1.0; (0.5, 0.5) -> (0.6, 0.4) -> 0.1.
    """
    cur_cash = 1.0 if current is None or current.empty else 1.0 - float(current.sum())
    tgt_cash = 1.0 - float(target.sum())
    return (turnover(target, current) + abs(tgt_cash - cur_cash)) / 2.0


@dataclass
class PeriodArrays:
    """One holding period on arrays: the daily columns of DAILY_COLUMNS and the carry."""

    gross: np.ndarray
    cost: np.ndarray
    net: np.ndarray
    turnover: np.ndarray
    wealth: np.ndarray
    bankrupt_flags: np.ndarray
    end_weights: np.ndarray
    end_wealth: float
    bankrupt: bool


def holding_period_array(
    w: np.ndarray,
    streams: np.ndarray,
    traded: float,
    rate: float,
    start_wealth: float = 1.0,
    bankrupt: bool = False,
    floor: float = BANKRUPTCY_FLOOR,
) -> PeriodArrays:
    """`holding_period` on arrays (w: atoms; streams: days x atoms, already restricted to the period)."""
    n = streams.shape[0]
    if bankrupt or start_wealth < floor:
        return PeriodArrays(
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.full(n, float(start_wealth)),
            np.ones(n, dtype=bool),
            np.zeros(0),
            float(start_wealth),
            True,
        )
    gross, end = drift_array(w, streams)
    gross = np.asarray(gross, dtype=float).copy()
    cost = np.zeros(n)
    turn = np.zeros(n)
    if n:
        cost[0] = rate * traded
        turn[0] = traded
    net = (1.0 + gross) * (1.0 - cost) - 1.0
    wealth = start_wealth * np.cumprod(1.0 + net)
    broke = np.flatnonzero(wealth < floor)
    flag = np.zeros(n, dtype=bool)
    if len(broke):
        k = int(broke[0])  # liquidated at the close of day k: from k+1 on the book is cash
        gross[k + 1 :] = 0.0
        net[k + 1 :] = 0.0
        wealth[k + 1 :] = wealth[k]
        flag[k:] = True
        end = np.zeros(0)
    end_wealth = float(wealth[-1]) if n else float(start_wealth)
    return PeriodArrays(gross, cost, net, turn, wealth, flag, end, end_wealth, bool(len(broke)))


def _in_cash(index: pd.Index, wealth: float) -> PeriodResult:
    daily = pd.DataFrame(
        {"gross_return": 0.0, "cost": 0.0, "net_return": 0.0, "turnover": 0.0, "wealth": wealth, "bankrupt": True},
        index=index,
        columns=DAILY_COLUMNS,
    )
    daily = daily.astype({c: float for c in DAILY_COLUMNS[:-1]} | {"bankrupt": bool})
    return PeriodResult(daily, pd.Series(dtype=float), float(wealth), True)


def holding_period(
    weights: pd.Series,
    streams: pd.DataFrame,
    traded: float,
    rate: float,
    start_wealth: float = 1.0,
    bankrupt: bool = False,
    floor: float = BANKRUPTCY_FLOOR,
) -> PeriodResult:
    """One holding period: `streams` must already be restricted to (D_prev, D] (no lookahead).

    `traded` is the notional from `turnover(target, drifted_previous)`; `rate` = slippage + commission
    of the asset class. Cost hits the first day. Wealth compounds from `start_wealth`; the first day
    it ends below `floor` the book is sold to cash at that close (the day's loss stands, no friction),
    and every later day, and every later period started with `bankrupt=True`, earns exactly 0.
    """
    if bankrupt or start_wealth < floor:
        return _in_cash(streams.index, start_wealth)
    w = _check_weights(weights)  # negative weights raise whatever their sum
    if w.empty or w.sum() <= 0 or streams.empty:
        w_arr, s_arr = np.zeros(0), np.zeros((len(streams), 0))
    else:
        _require_columns(streams, w.index)
        w_arr, s_arr = w.to_numpy(), streams[w.index].to_numpy(dtype=float)
    p = holding_period_array(w_arr, s_arr, traded, rate, start_wealth, bankrupt, floor)
    daily = pd.DataFrame(
        {
            "gross_return": p.gross,
            "cost": p.cost,
            "net_return": p.net,
            "turnover": p.turnover,
            "wealth": p.wealth,
            "bankrupt": p.bankrupt_flags,
        },
        index=streams.index,
        columns=DAILY_COLUMNS,
    )
    end = (
        pd.Series(p.end_weights, index=weights.index if len(p.end_weights) == len(weights) else None, dtype=float)
        if len(p.end_weights)
        else pd.Series(dtype=float)
    )
    if weights.empty or weights.sum() <= 0:
        end = weights
    return PeriodResult(daily, end, p.end_wealth, p.bankrupt)


def _weights_series(frame: pd.DataFrame) -> pd.Series:
    return (
        pd.Series(frame["weight"].to_numpy(float), index=frame["atom_id"].to_numpy())
        if len(frame)
        else pd.Series(dtype=float)
    )


def _between(frame: pd.DataFrame, after, until) -> pd.DataFrame:
    """Rows dated in (after, until]: one holding period."""
    return frame[(frame.index > pd.Timestamp(after)) & (frame.index <= pd.Timestamp(until))]


def rebalance_period(
    raw: pd.DataFrame,
    target: pd.DataFrame,
    previous: pd.DataFrame | None,
    dates: tuple,
    direction: str,
    rate: float,
    start_wealth: float = 1.0,
    bankrupt: bool = False,
    floor: float = 0.01,
) -> PeriodResult:
    """One out-of-sample period of a rebalanced book, as the sleeve and tournament assets store it.

    raw: physical daily returns (dates x symbols) covering (d2, d]. target / previous: the weights
    decided at d1 / d2 (columns atom_id, symbol, weight). dates = (d2 or None, d1, d). The book
    trades from where `previous` had drifted to by d1 into `target`, then drifts over (d1, d].
    """
    d2, d1, d = dates
    window = _between(raw, d2 if d2 is not None else d1, d)
    book = Book(direction, rate, floor)
    t = (target["atom_id"].to_numpy(), target["symbol"].to_numpy(), target["weight"].to_numpy(float))
    p = (
        (previous["atom_id"].to_numpy(), previous["symbol"].to_numpy(), previous["weight"].to_numpy(float))
        if previous is not None
        else None
    )
    symbols = sorted(set(t[1]) | (set(p[1]) if p is not None else set()))
    _require_columns(raw, symbols, d)
    returns = window[symbols].to_numpy(dtype=float)
    days = window.index
    split = int(np.searchsorted(days.values, np.datetime64(pd.Timestamp(d1)), side="right")) if d2 is not None else 0
    arrays = book.period(returns, symbols, t, p if d2 is not None else None, split, start_wealth, bankrupt)
    held = days[split:]
    daily = pd.DataFrame(
        {
            "gross_return": arrays.gross,
            "cost": arrays.cost,
            "net_return": arrays.net,
            "turnover": arrays.turnover,
            "wealth": arrays.wealth,
            "bankrupt": arrays.bankrupt_flags,
        },
        index=held,
        columns=DAILY_COLUMNS,
    )
    ids = list(dict.fromkeys(t[0]))
    end = (
        pd.Series(arrays.end_weights, index=ids)
        if len(arrays.end_weights) == len(ids) and len(ids)
        else pd.Series(dtype=float)
    )
    return PeriodResult(daily, end, arrays.end_wealth, arrays.bankrupt)


@dataclass
class Book:
    """A rebalanced book of synthetic-long atoms, walked forward one holding period at a time on arrays.

    Each period: the previous weights drift over (d2, d1] to where they stood at d1, the book trades
    into the target (friction on the traded notional, first day), then drifts over (d1, d].
    """

    direction: str
    rate: float
    floor: float = BANKRUPTCY_FLOOR

    def period(
        self, returns: np.ndarray, symbols: list[str], target, previous, split: int, start_wealth: float, bankrupt: bool
    ) -> PeriodArrays:
        """returns: (days of (d2, d] x symbols) physical returns; target/previous: (atom ids, symbols,
        weights) decided at d1/d2 (previous None: from cash); split: the first day after d1."""
        col = {s: i for i, s in enumerate(symbols)}
        streams = -np.minimum(returns, 1.0) if self.direction.lower() == "short" else returns
        t_ids, t_syms, t_w = target
        current_ids, current_w = None, None
        if previous is not None:
            p_ids, p_syms, p_w = previous
            if len(p_w):
                _, current_w = drift_array(p_w, streams[:split][:, [col[s] for s in p_syms]])
                current_ids = p_ids
        traded = _traded(t_ids, t_w, current_ids, current_w)
        held = streams[split:][:, [col[s] for s in t_syms]] if len(t_syms) else np.zeros((len(streams) - split, 0))
        return holding_period_array(
            np.asarray(t_w, dtype=float), held, traded, self.rate, start_wealth, bankrupt, self.floor
        )


def _traded(t_ids, t_w, c_ids, c_w) -> float:
    """sum |target - current| over the union of atoms (current None: from cash, sum of the target)."""
    if c_ids is None or c_w is None or len(c_w) == 0:
        return float(np.abs(t_w).sum())
    merged: dict = {}
    for a, w in zip(t_ids, t_w):
        merged[a] = merged.get(a, 0.0) + float(w)
    for a, w in zip(c_ids, c_w):
        merged[a] = merged.get(a, 0.0) - float(w)
    return float(np.abs(np.array([merged[k] for k in sorted(merged)])).sum())
