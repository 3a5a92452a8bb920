"""Golden-number tests for quant_assets.simulate (drift, turnover, friction) and the short loss cap
(domain-spec §10.4, §10.5, §10.18)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.selection import synthetic_long
from quant_assets.simulate import drift, holding_period, turnover


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
    assert list(d.columns) == ["gross_return", "cost", "net_return", "turnover"]
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
    assert list(res.daily.columns) == ["gross_return", "cost", "net_return", "turnover"]


# --- short loss cap (§10.5, §10.18) ------------------------------------------------------------


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
