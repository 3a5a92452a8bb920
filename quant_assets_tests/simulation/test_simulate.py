"""Golden-number tests for quant_assets.simulation.simulate (drift, turnover, friction) and the short loss cap
(a short loses at most 100 % of its weight: its synthetic-long stream is -min(r, 1))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.selection.funnel import synthetic_long
from quant_assets.simulation.simulate import (
    BANKRUPTCY_FLOOR,
    DAILY_COLUMNS,
    drift,
    drift_array,
    holding_period,
    one_way_turnover,
    rebalance_period,
    turnover,
)


def _streams(rows: list[list[float]], cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=cols, index=pd.bdate_range("2024-01-01", periods=len(rows)), dtype=float)


W55 = pd.Series({"A": 0.5, "B": 0.5})


# --- drift -------------------------------------------------------------------------------


def test_drift_two_days_golden():
    streams = _streams([[0.10, 0.0], [0.0, 0.10]], ["A", "B"])
    port, end = drift(W55, streams)
    # day 1: 0.55 + 0.50 = 1.05 -> +5%; day 2: 0.55 + 0.55 = 1.10 -> 1.10/1.05 - 1 = 0.05/1.05
    # (B's +10% acts on B's drifted weight 0.5/1.05, not on 1.0)
    np.testing.assert_allclose(port.to_numpy(), [0.05, 0.05 / 1.05], rtol=0, atol=1e-15)
    assert port.iloc[1] == pytest.approx(0.0476190476190476, abs=1e-15)
    assert (1 + port).prod() == pytest.approx(1.10, abs=1e-15)
    np.testing.assert_allclose(end.to_numpy(), [0.5, 0.5], atol=1e-15)
    assert list(port.index) == list(streams.index)
    assert list(end.index) == ["A", "B"]


def test_drift_one_day_end_weights_golden():
    streams = _streams([[0.10, 0.0]], ["A", "B"])
    port, end = drift(W55, streams)
    assert port.iloc[0] == pytest.approx(0.05, abs=1e-15)
    # 0.55 / 1.05 and 0.50 / 1.05
    np.testing.assert_allclose(end.to_numpy(), [0.5238095238095238, 0.4761904761904762], atol=1e-15)
    assert end.sum() == pytest.approx(1.0, abs=1e-15)


def test_drift_compounds_to_buy_and_hold_wealth():
    streams = _streams([[0.02, -0.01], [-0.03, 0.04], [0.01, 0.00]], ["A", "B"])
    w = pd.Series({"A": 0.6, "B": 0.4})
    port, end = drift(w, streams)
    wealth_a = 0.6 * 1.02 * 0.97 * 1.01
    wealth_b = 0.4 * 0.99 * 1.04 * 1.00
    assert (1 + port).prod() == pytest.approx(wealth_a + wealth_b, abs=1e-15)
    np.testing.assert_allclose(end.to_numpy(), np.array([wealth_a, wealth_b]) / (wealth_a + wealth_b), atol=1e-15)


def test_drift_ignores_extra_stream_columns_and_holds_value_on_missing_price():
    streams = _streams([[np.nan, 0.10, 9.0]], ["A", "B", "UNHELD"])
    port, end = drift(W55, streams)
    assert port.iloc[0] == pytest.approx(0.05, abs=1e-15)  # A holds its value, UNHELD ignored
    np.testing.assert_allclose(end.to_numpy(), [0.5 / 1.05, 0.55 / 1.05], atol=1e-15)


def test_drift_in_cash_earns_zero():
    streams = _streams([[0.1], [0.2]], ["A"])
    port, end = drift(pd.Series(dtype=float), streams)
    assert port.tolist() == [0.0, 0.0]
    assert end.empty


# --- turnover -------------------------------------------------------------------------------


def test_turnover_from_cash_is_sum_of_target():
    assert turnover(pd.Series({"A": 0.6, "B": 0.4}), None) == pytest.approx(1.0, abs=1e-15)
    assert turnover(pd.Series({"A": 0.6, "B": 0.4}), pd.Series(dtype=float)) == pytest.approx(1.0, abs=1e-15)


def test_turnover_rebalance_golden():
    assert turnover(pd.Series({"A": 0.6, "B": 0.4}), W55) == pytest.approx(0.2, abs=1e-15)


def test_turnover_disjoint_names_is_two():
    assert turnover(pd.Series({"A": 1.0}), pd.Series({"B": 1.0})) == 2.0
    assert turnover(pd.Series({"A": 0.5, "C": 0.5}), W55) == pytest.approx(1.0, abs=1e-15)


def test_turnover_to_cash_is_sum_of_current():
    assert turnover(pd.Series(dtype=float), pd.Series({"A": 0.7, "B": 0.3})) == pytest.approx(1.0, abs=1e-15)


def test_turnover_identical_is_zero():
    assert turnover(W55, W55.copy()) == 0.0


# --- friction on the first day only ---------------------------------------------------------


def test_holding_period_friction_first_day_only():
    streams = _streams([[0.10, 0.0], [0.0, 0.10], [0.0, 0.0]], ["A", "B"])
    rate, traded = 0.0006, 0.2
    res = holding_period(W55, streams, traded=traded, rate=rate)
    d = res.daily
    assert list(d.columns) == ["gross_return", "cost", "net_return", "turnover", "wealth", "bankrupt"]
    np.testing.assert_allclose(d["gross_return"].to_numpy(), [0.05, 0.05 / 1.05, 0.0], atol=1e-15)
    np.testing.assert_allclose(d["cost"].to_numpy(), [rate * traded, 0.0, 0.0], atol=1e-18)
    np.testing.assert_allclose(d["turnover"].to_numpy(), [traded, 0.0, 0.0], atol=1e-18)
    net_1 = (1 + 0.05) * (1 - rate * traded) - 1
    assert d["net_return"].iloc[0] == pytest.approx(net_1, abs=1e-15)
    assert d["net_return"].iloc[0] == pytest.approx(0.049874, abs=1e-12)
    np.testing.assert_allclose(d["net_return"].iloc[1:].to_numpy(), d["gross_return"].iloc[1:].to_numpy(), atol=0)
    np.testing.assert_allclose(res.end_weights.to_numpy(), [0.5, 0.5], atol=1e-15)


def test_holding_period_from_cash_pays_full_entry():
    streams = _streams([[0.0, 0.0]], ["A", "B"])
    traded = turnover(W55, None)
    res = holding_period(W55, streams, traded=traded, rate=0.001)
    assert res.daily["net_return"].iloc[0] == pytest.approx(-0.001, abs=1e-15)


def test_holding_period_empty_window():
    res = holding_period(W55, _streams([], ["A", "B"]), traded=0.5, rate=0.001)
    assert res.daily.empty
    assert list(res.daily.columns) == DAILY_COLUMNS
    assert res.end_wealth == 1.0 and res.bankrupt is False


# --- short loss cap ------------------------------------------------------------


def test_synthetic_long_short_stream_caps_loss_at_minus_one():
    raw = _streams([[3.0], [-0.5], [1.0], [0.2]], ["S"])
    short = synthetic_long(raw, "short")
    np.testing.assert_array_equal(short["S"].to_numpy(), [-1.0, 0.5, -1.0, -0.2])
    assert short["S"].iloc[0] == -1.0  # +300% day: exactly -100%, not -300%
    pd.testing.assert_frame_equal(synthetic_long(raw, "long"), raw)
    pd.testing.assert_frame_equal(synthetic_long(raw, "SHORT"), short)


def test_short_blown_up_position_is_worth_zero_never_negative():
    raw = _streams([[3.0, 0.0], [0.5, 0.10], [-0.5, 0.0]], ["S", "L"])
    streams = pd.concat([synthetic_long(raw[["S"]], "short"), raw[["L"]]], axis=1)
    port, end = drift(W55.rename({"A": "S", "B": "L"}), streams)
    # day 1: short loses its whole 0.5, long flat -> -50%; then only L moves the book
    np.testing.assert_allclose(port.to_numpy(), [-0.5, 0.10, 0.0], atol=1e-15)
    assert end["S"] == 0.0
    assert end["L"] == 1.0
    assert (end >= 0).all()


def test_short_minus_fifty_day_gains_fifty():
    raw = _streams([[-0.5]], ["S"])
    port, end = drift(pd.Series({"S": 1.0}), synthetic_long(raw, "short"))
    assert port.iloc[0] == pytest.approx(0.5, abs=1e-15)
    assert end["S"] == 1.0


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_fully_blown_up_book_earns_zero_not_nan_afterwards():
    raw = _streams([[3.0], [0.2], [-0.1]], ["S"])
    port, end = drift(pd.Series({"S": 1.0}), synthetic_long(raw, "short"))
    assert port.iloc[0] == -1.0
    assert end["S"] == 0.0
    assert np.isfinite(port.to_numpy()).all()
    np.testing.assert_array_equal(port.to_numpy(), [-1.0, 0.0, 0.0])


# --- one-way turnover (the reported figure) ----------------------------------------------------


def test_one_way_turnover_spec_examples():
    target = pd.Series({"A": 0.6, "B": 0.4})
    assert one_way_turnover(target, None) == pytest.approx(1.0, abs=1e-15)  # from 100% cash
    assert turnover(target, None) == pytest.approx(1.0, abs=1e-15)  # asset notional 1.0
    assert one_way_turnover(target, W55) == pytest.approx(0.1, abs=1e-15)
    assert turnover(target, W55) == pytest.approx(0.2, abs=1e-15)  # notional = 2 x one-way when no cash moves
    # half in cash -> fully invested: buy 0.5 of assets, sell 0.5 of cash -> one-way 0.5
    assert one_way_turnover(W55, pd.Series({"A": 0.25, "B": 0.25})) == pytest.approx(0.5, abs=1e-15)


# --- cash residual, gross normalisation, signed weights -------------------------------


def test_residual_weight_is_cash_earning_zero():
    streams = _streams([[0.10, 0.10], [0.10, 0.10]], ["A", "B"])
    port, end = drift(pd.Series({"A": 0.25, "B": 0.25}), streams)
    # 0.5 invested +10%: 1.05; then 0.55 * 1.1 + 0.5 = 1.105 -> 1.105 / 1.05 - 1
    np.testing.assert_allclose(port.to_numpy(), [0.05, 1.105 / 1.05 - 1], atol=1e-15)
    np.testing.assert_allclose(end.to_numpy(), [0.3025 / 1.105, 0.3025 / 1.105], atol=1e-15)
    assert end.sum() < 1  # the rest is cash


def test_gross_above_one_is_scaled_down_not_levered():
    streams = _streams([[0.10, 0.0]], ["A", "B"])
    port, _ = drift(pd.Series({"A": 1.0, "B": 1.0}), streams)
    assert port.iloc[0] == pytest.approx(0.05, abs=1e-15)


def test_negative_weights_are_rejected():
    with pytest.raises(ValueError, match="synthetic-long"):
        drift(pd.Series({"A": 1.5, "B": -0.5}), _streams([[0.0, 0.0]], ["A", "B"]))


def test_signed_sum_bug_short_on_plus_50_then_plus_150_is_a_loss():
    # a -0.5 short on +50% / +150% days became a +3.0 long and a +450% day when normalised
    # by the signed sum. In synthetic-long space it loses 0.25 then its remaining 0.25, and no more.
    raw = _streams([[0.5, 0.0], [1.5, 0.0]], ["S", "L"])
    streams = pd.concat([synthetic_long(raw[["S"]], "short"), raw[["L"]]], axis=1)
    port, end = drift(pd.Series({"S": 0.5, "L": 0.5}), streams)
    np.testing.assert_allclose(port.to_numpy(), [-0.25, 0.5 / 0.75 - 1.0], atol=1e-15)
    assert (port > -1).all() and (port < 0).all()
    assert end.to_dict() == {"S": 0.0, "L": 1.0}
    assert (1 + port).prod() == pytest.approx(0.5, abs=1e-15)


def test_short_stream_floor_on_plus_400_day():
    raw = _streams([[4.0], [10.0], [1.0000001]], ["S"])
    short = synthetic_long(raw, "short")["S"]
    assert (short >= -1.0).all()
    np.testing.assert_array_equal(short.to_numpy(), [-1.0, -1.0, -1.0])


# --- wealth carried across periods ------------------------------------------------------


def test_wealth_persists_across_two_periods():
    rate = 0.001
    s1 = _streams([[0.02, -0.01], [0.03, 0.01]], ["A", "B"])
    s2 = pd.DataFrame(
        [[-0.04, 0.02], [0.01, 0.05], [0.0, -0.02]],
        columns=["A", "B"],
        index=pd.bdate_range("2024-01-03", periods=3),
        dtype=float,
    )
    w1, w2 = pd.Series({"A": 0.6, "B": 0.4}), pd.Series({"A": 0.3, "B": 0.7})
    p1 = holding_period(w1, s1, turnover(w1, None), rate)
    _, drifted = drift(w1, s1)
    p2 = holding_period(w2, s2, turnover(w2, drifted), rate, start_wealth=p1.end_wealth, bankrupt=p1.bankrupt)
    # period 1 by hand: entry cost 0.001 on day 1
    a, b = 0.6 * 1.02 * 1.03, 0.4 * 0.99 * 1.01
    assert p1.end_wealth == pytest.approx((a + b) * (1 - rate), abs=1e-15)
    assert p1.daily["wealth"].iloc[-1] == p1.end_wealth
    assert p2.daily["wealth"].iloc[0] == pytest.approx(p1.end_wealth * (1 + p2.daily["net_return"].iloc[0]), abs=1e-15)
    stitched = pd.concat([p1.daily["net_return"], p2.daily["net_return"]])
    assert np.prod(1 + stitched.to_numpy()) == pytest.approx(p2.end_wealth, abs=1e-14)
    np.testing.assert_allclose(
        np.cumprod(1 + stitched.to_numpy()), pd.concat([p1.daily["wealth"], p2.daily["wealth"]]).to_numpy(), rtol=1e-14
    )
    assert not p2.bankrupt and not p2.daily["bankrupt"].any()


def test_friction_on_first_day_equals_rate_times_traded_at_any_wealth():
    streams = _streams([[0.0, 0.0], [0.01, 0.01]], ["A", "B"])
    target = pd.Series({"A": 0.6, "B": 0.4})
    traded = turnover(target, W55)
    res = holding_period(target, streams, traded, rate=0.0006, start_wealth=2.0)
    assert res.daily["cost"].iloc[0] == pytest.approx(0.0006 * 0.2, abs=1e-18)
    assert res.daily["cost"].iloc[1] == 0.0
    assert res.daily["wealth"].iloc[0] == pytest.approx(2.0 * (1 - 0.00012), abs=1e-15)
    assert res.end_wealth == pytest.approx(2.0 * (1 - 0.00012) * 1.01, abs=1e-15)


# --- bankruptcy floor --------------------------------------------------------------


def test_bankruptcy_floor_liquidates_and_stays_in_cash():
    # 99.5% in a short atom that meets a +150% day: wealth 0.005 < 0.01 -> sold to cash that day.
    raw = _streams([[1.5, 0.0], [0.0, 0.10], [0.0, 0.10]], ["S", "L"])
    streams = pd.concat([synthetic_long(raw[["S"]], "short"), raw[["L"]]], axis=1)
    res = holding_period(pd.Series({"S": 0.995, "L": 0.005}), streams, traded=0.0, rate=0.001)
    d = res.daily
    assert d["net_return"].iloc[0] == pytest.approx(-0.995, abs=1e-15)  # the loss stands
    np.testing.assert_array_equal(d["net_return"].iloc[1:].to_numpy(), [0.0, 0.0])  # L's +10% not earned
    np.testing.assert_allclose(d["wealth"].to_numpy(), [0.005, 0.005, 0.005], atol=1e-15)
    assert d["bankrupt"].tolist() == [True, True, True]
    assert res.bankrupt and res.end_weights.empty and res.end_wealth == pytest.approx(0.005, abs=1e-15)
    # the next period stays in cash, whatever it is asked to trade: no friction, zero returns
    nxt = holding_period(
        W55,
        _streams([[0.5, 0.5], [0.2, 0.2]], ["A", "B"]),
        traded=1.0,
        rate=0.01,
        start_wealth=res.end_wealth,
        bankrupt=res.bankrupt,
    )
    assert nxt.bankrupt and nxt.end_wealth == res.end_wealth
    assert (nxt.daily[["gross_return", "cost", "net_return", "turnover"]].to_numpy() == 0).all()
    assert nxt.daily["bankrupt"].all()


def test_full_short_wipe_out_is_minus_100_then_zero():
    raw = _streams([[0.2], [1.5], [-0.3]], ["S"])
    res = holding_period(pd.Series({"S": 1.0}), synthetic_long(raw, "short"), traded=1.0, rate=0.0)
    np.testing.assert_allclose(res.daily["net_return"].to_numpy(), [-0.2, -1.0, 0.0], atol=1e-15)
    assert res.end_wealth == 0.0 and res.bankrupt
    assert res.daily["bankrupt"].tolist() == [False, True, True]


def test_floor_is_absolute_one_percent_of_initial_wealth():
    streams = _streams([[-0.99]], ["A"])
    # start 0.5 -> 0.005 < 0.01: bankrupt; start 2.0 -> 0.02: alive
    assert holding_period(pd.Series({"A": 1.0}), streams, 0.0, 0.0, start_wealth=0.5).bankrupt
    alive = holding_period(pd.Series({"A": 1.0}), streams, 0.0, 0.0, start_wealth=2.0)
    assert not alive.bankrupt and alive.end_wealth == pytest.approx(0.02, abs=1e-15)
    assert BANKRUPTCY_FLOOR == 0.01
    # a start already below the floor never trades
    low = holding_period(pd.Series({"A": 1.0}), _streams([[0.5]], ["A"]), 1.0, 0.01, start_wealth=0.009)
    assert low.bankrupt and low.end_wealth == 0.009 and low.daily["net_return"].iloc[0] == 0.0


def test_bankrupt_period_with_empty_window_keeps_schema():
    res = holding_period(W55, _streams([], ["A", "B"]), traded=0.5, rate=0.001, start_wealth=0.005, bankrupt=True)
    assert res.daily.empty and list(res.daily.columns) == DAILY_COLUMNS and res.end_wealth == 0.005


# --- bad input: one rule for signed weights, no silent orphans ----------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        {"S": -1.0},  # a lone short given as a negative weight: the book used to earn 0 every day
        {"A": 0.5, "S": -0.5},  # signed sum 0: also returned early with 0 %
        {"A": 1.5, "S": -0.5},  # positive signed sum: raised (the one case that already did)
    ],
)
def test_signed_weights_raise_whatever_their_sum(weights):
    streams = _streams([[0.01, 0.02], [0.03, -0.01]], ["A", "S"])
    with pytest.raises(ValueError, match=r"negative weights .*'S': -?[0-9.]+.*synthetic-long"):
        drift(pd.Series(weights), streams)
    with pytest.raises(ValueError, match="synthetic-long"):
        holding_period(pd.Series(weights), streams, traded=0.0, rate=0.0)
    with pytest.raises(ValueError, match="synthetic-long"):
        drift_array(np.array(list(weights.values())), streams[list(weights)].to_numpy())


def test_all_zero_weights_are_cash_earning_zero():
    port, _ = drift(pd.Series({"A": 0.0}), _streams([[0.05], [0.05]], ["A"]))
    assert port.tolist() == [0.0, 0.0]


def test_weights_on_a_symbol_without_returns_name_it_and_the_date():
    """The period simulation used to reindex and let the orphan earn 0 % silently."""
    streams = _streams([[0.01], [0.02]], ["A"])
    with pytest.raises(ValueError, match=r"weights on \['GHOST'\] but no returns"):
        drift(pd.Series({"A": 0.5, "GHOST": 0.5}), streams)
    with pytest.raises(ValueError, match=r"weights on \['GHOST'\] but no returns"):
        holding_period(pd.Series({"A": 0.5, "GHOST": 0.5}), streams, traded=1.0, rate=0.0)
    target = pd.DataFrame({"atom_id": ["A|t|long", "GHOST|t|long"], "symbol": ["A", "GHOST"], "weight": [0.5, 0.5]})
    d1, d = streams.index[0].date(), streams.index[-1].date()
    with pytest.raises(ValueError, match=rf"weights on \['GHOST'\] but no returns for them for the period ending {d}"):
        rebalance_period(streams, target, None, (None, d1, d), "long", rate=0.0)
