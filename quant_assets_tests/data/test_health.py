"""Exact-verdict tests for quant_assets.data.health.apply_health_policy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quant_assets.config.manifest import HealthPolicy
from quant_assets.data.health import INSUFFICIENT_HISTORY, apply_health_policy

POLICY = HealthPolicy()  # toxic 5.0, max missing share 0.10, min coverage 0.5
N_DAYS = 21  # 21 closes -> 20 returns


def _dates(n: int = N_DAYS) -> pd.DatetimeIndex:
    return pd.bdate_range("2024-01-01", periods=n)


def _growing(n: int = N_DAYS, rate: float = 0.01, start: float = 100.0) -> np.ndarray:
    """Closes whose every close-to-close return is `rate` (up to rounding)."""
    return start * (1.0 + rate) ** np.arange(n)


def _zigzag(n: int = N_DAYS, start: float = 100.0) -> np.ndarray:
    """Closes alternating 100, 110, 100, 110 ...: returns +0.1, -1/11, +0.1 ... (non-zero variance)."""
    return np.where(np.arange(n) % 2 == 0, start, start * 1.1)


def _verdict(result, symbol: str) -> dict:
    rows = result.verdicts[result.verdicts["symbol"] == symbol]
    assert len(rows) == 1, f"expected exactly one verdict row for {symbol}"
    return rows.iloc[0].to_dict()


@pytest.fixture(scope="module")
def mixed():
    """One clean symbol plus one per exclusion reason, all on the same 21 business days."""
    n = N_DAYS
    toxic = _zigzag(n).copy()
    toxic[10] = toxic[9] * 7.0  # +600% in one day
    missing = _zigzag(n).astype(float)
    missing[[3, 7, 11]] = np.nan  # 3 missing closes -> 6 missing returns of 20
    young = np.full(n, np.nan)
    young[-5:] = _growing(5)  # 4 returns, below the floor of 10
    closes = pd.DataFrame(
        {
            "GOOD": _growing(n),
            "TOXIC": toxic,
            "FLAT": np.full(n, 50.0),
            "YOUNG": young,
            "GAPPY": missing,
            "DEAD": np.full(n, np.nan),
        },
        index=_dates(n),
    )
    return apply_health_policy(closes, POLICY, min_history=10)


def test_one_verdict_per_symbol_with_fixed_columns(mixed):
    assert list(mixed.verdicts.columns) == ["symbol", "status", "reason", "value", "threshold", "n_obs"]
    assert mixed.verdicts["symbol"].tolist() == ["GOOD", "TOXIC", "FLAT", "YOUNG", "GAPPY", "DEAD"]


def test_clean_symbol_kept(mixed):
    v = _verdict(mixed, "GOOD")
    assert (v["status"], v["reason"], v["n_obs"]) == ("kept", "ok", 20)
    assert math.isnan(v["value"]) and math.isnan(v["threshold"])
    assert list(mixed.returns.columns) == ["GOOD"]
    assert mixed.returns.shape == (20, 1)
    np.testing.assert_allclose(mixed.returns["GOOD"].to_numpy(), 0.01, rtol=0, atol=1e-12)
    assert mixed.returns.index[0] == _dates()[1]  # first (undefined) return dropped


def test_toxic_move_reason_value_threshold(mixed):
    v = _verdict(mixed, "TOXIC")
    assert (v["status"], v["reason"]) == ("excluded", "toxic_move")
    assert v["value"] == pytest.approx(6.0, abs=1e-12)
    assert v["threshold"] == 5.0
    assert v["n_obs"] == 20


def test_zero_variance_constant_price(mixed):
    v = _verdict(mixed, "FLAT")
    assert (v["status"], v["reason"], v["value"], v["threshold"], v["n_obs"]) == (
        "excluded",
        "zero_variance",
        0.0,
        0.0,
        20,
    )


def test_insufficient_history_reason_value_threshold(mixed):
    v = _verdict(mixed, "YOUNG")
    assert (v["status"], v["reason"]) == ("excluded", INSUFFICIENT_HISTORY)
    assert (v["value"], v["threshold"], v["n_obs"]) == (4.0, 10.0, 4)


def test_missing_data_share(mixed):
    v = _verdict(mixed, "GAPPY")
    # the share counts missing closes since listing (3 of 21), not the 6 returns they void
    assert (v["status"], v["reason"]) == ("excluded", "missing_data")
    assert v["value"] == pytest.approx(3 / 21, abs=1e-12)
    assert v["threshold"] == 0.10
    assert v["n_obs"] == 14


def test_no_prices(mixed):
    v = _verdict(mixed, "DEAD")
    assert (v["status"], v["reason"], v["value"], v["threshold"], v["n_obs"]) == ("excluded", "no_prices", 0.0, 10.0, 0)


def test_coverage_excludes_insufficient_history_from_denominator(mixed):
    # eligible: GOOD, TOXIC, FLAT, GAPPY, DEAD (YOUNG is not yet eligible) -> 1 kept of 5
    assert mixed.coverage == pytest.approx(0.2, abs=1e-15)


def test_toxic_threshold_is_strict():
    n = 12
    exact = _zigzag(n).copy()
    exact[6] = exact[5] * 6.0  # exactly +500%: not above 5.0
    above = _zigzag(n).copy()
    above[6] = above[5] * 6.01
    closes = pd.DataFrame({"EXACT": exact, "ABOVE": above}, index=_dates(n))
    res = apply_health_policy(closes, POLICY, min_history=5)
    assert _verdict(res, "EXACT")["status"] == "kept"
    v = _verdict(res, "ABOVE")
    assert v["reason"] == "toxic_move"
    assert v["value"] == pytest.approx(5.01, abs=1e-12)


def test_toxic_threshold_follows_policy():
    n = 12
    c = _zigzag(n).copy()
    c[6] = c[5] * 1.6  # +60%
    closes = pd.DataFrame({"X": c}, index=_dates(n))
    assert _verdict(apply_health_policy(closes, POLICY, 5), "X")["status"] == "kept"
    v = _verdict(apply_health_policy(closes, HealthPolicy(toxic_abs_return=0.5), 5), "X")
    assert (v["reason"], v["threshold"]) == ("toxic_move", 0.5)
    assert v["value"] == pytest.approx(0.6, abs=1e-12)


def test_price_to_zero_then_back_is_toxic_with_infinite_value():
    n = 12
    c = _zigzag(n).copy()
    c[5] = 0.0  # -100%, then +inf when it comes back
    closes = pd.DataFrame({"X": c}, index=_dates(n))
    v = _verdict(apply_health_policy(closes, POLICY, 5), "X")
    assert v["reason"] == "toxic_move"
    assert v["value"] == math.inf


def test_no_forward_fill_nan_close_removes_that_date_and_next():
    n = 21
    dates = _dates(n)
    a = _growing(n, 0.01)
    b = _growing(n, 0.02)
    b[5] = np.nan  # one missing close: returns on dates[5] and dates[6] are missing
    closes = pd.DataFrame({"A": a, "B": b}, index=dates)
    res = apply_health_policy(closes, POLICY, min_history=10)
    # 2 of 20 returns missing = 0.10, not above the 0.10 ceiling: both kept
    vb = _verdict(res, "B")
    assert (vb["status"], vb["n_obs"]) == ("kept", 18)
    expected_dates = dates[1:].delete([4, 5])  # dates[5], dates[6] gone
    assert list(res.returns.index) == list(expected_dates)
    assert res.returns.shape == (18, 2)
    # no zero return was invented for B across the gap, and A is not padded either
    assert not (res.returns["B"] == 0.0).any()
    np.testing.assert_allclose(res.returns["A"].to_numpy(), 0.01, atol=1e-12)
    np.testing.assert_allclose(res.returns["B"].to_numpy(), 0.02, atol=1e-12)
    assert res.returns.notna().all().all()


def test_missing_closes_cross_the_ceiling_one_day_at_a_time():
    n = 21
    b = _growing(n, 0.02)
    b[[5, 12]] = np.nan  # 2 of 21 closes missing = 0.095: under the 0.10 ceiling
    closes = pd.DataFrame({"A": _growing(n), "B": b}, index=_dates(n))
    res = apply_health_policy(closes, POLICY, min_history=10)
    assert _verdict(res, "B")["status"] == "kept"
    assert len(res.returns) == 16  # dense intersection drops the 4 voided returns, never fills them
    b[17] = np.nan  # 3 of 21 = 0.143
    res = apply_health_policy(pd.DataFrame({"A": _growing(n), "B": b}, index=_dates(n)), POLICY, min_history=10)
    v = _verdict(res, "B")
    assert (v["reason"], v["value"], v["n_obs"]) == ("missing_data", pytest.approx(3 / 21), 14)
    assert list(res.returns.columns) == ["A"]
    assert len(res.returns) == 20  # B excluded: its gaps no longer thin the matrix


def test_late_listing_is_not_missing_data():
    n = 21
    late = np.full(n, np.nan)
    late[6:] = _growing(n - 6, 0.02)  # listed on dates[6]: 14 returns, no gaps after listing
    closes = pd.DataFrame({"A": _growing(n), "LATE": late}, index=_dates(n))
    res = apply_health_policy(closes, POLICY, min_history=10)
    v = _verdict(res, "LATE")
    assert (v["status"], v["n_obs"]) == ("kept", 14)
    # dense intersection starts at LATE's first return (dates[7])
    assert res.returns.index[0] == _dates(n)[7]
    assert res.returns.shape == (14, 2)


def test_coverage_three_of_four_eligible():
    n = 21
    young = np.full(n, np.nan)
    young[-3:] = [1.0, 1.1, 1.2]
    closes = pd.DataFrame(
        {"A": _growing(n, 0.01), "B": _growing(n, 0.02), "C": _zigzag(n), "FLAT": np.full(n, 3.0), "YOUNG": young},
        index=_dates(n),
    )
    res = apply_health_policy(closes, POLICY, min_history=10)
    assert _verdict(res, "YOUNG")["reason"] == INSUFFICIENT_HISTORY
    assert res.coverage == 0.75
    assert list(res.returns.columns) == ["A", "B", "C"]


def test_coverage_nan_when_nobody_is_eligible():
    n = 6
    closes = pd.DataFrame({"A": _growing(n), "B": _zigzag(n)}, index=_dates(n))
    res = apply_health_policy(closes, POLICY, min_history=10)
    assert res.verdicts["reason"].tolist() == [INSUFFICIENT_HISTORY, INSUFFICIENT_HISTORY]
    assert res.verdicts["value"].tolist() == [5.0, 5.0]
    assert math.isnan(res.coverage)
    assert res.returns.shape == (0, 0)


def test_coverage_one_when_all_eligible_kept():
    n = 21
    closes = pd.DataFrame({"A": _growing(n, 0.01), "B": _zigzag(n)}, index=_dates(n))
    res = apply_health_policy(closes, POLICY, min_history=20)  # exactly at the floor: eligible
    assert res.verdicts["status"].tolist() == ["kept", "kept"]
    assert res.coverage == 1.0


def test_empty_closes():
    closes = pd.DataFrame(index=pd.DatetimeIndex([]), columns=["A"], dtype=float)
    res = apply_health_policy(closes, POLICY, min_history=10)
    assert _verdict(res, "A")["reason"] == "no_prices"
    assert res.returns.empty
    assert res.coverage == 0.0


def _with_gaps(runs: dict[str, list[int]], n: int = 41) -> pd.DataFrame:
    """Zigzag closes on n business days with the listed rows missing, per symbol."""
    frame = {}
    for symbol, rows in runs.items():
        c = _zigzag(n).astype(float)
        c[rows] = np.nan
        frame[symbol] = c
    return pd.DataFrame(frame, index=_dates(n))


def test_a_gap_longer_than_one_session_excludes_with_its_length():
    closes = _with_gaps({"ONE": [10], "TWO": [10, 11], "HALTED": [20, 21, 22], "DELISTED": [38, 39, 40]})
    result = apply_health_policy(closes, HealthPolicy(max_missing_share=0.5), min_history=10)
    one, two = _verdict(result, "ONE"), _verdict(result, "TWO")
    assert (one["status"], one["reason"]) == ("kept", "ok")  # a 1-session gap is tolerated
    assert (two["status"], two["reason"], two["value"], two["threshold"]) == ("excluded", "gap", 2.0, 1.0)
    assert (_verdict(result, "HALTED")["reason"], _verdict(result, "HALTED")["value"]) == ("gap", 3.0)
    # a symbol that stopped trading at the end of the window: the trailing run counts
    assert (_verdict(result, "DELISTED")["reason"], _verdict(result, "DELISTED")["value"]) == ("gap", 3.0)


def test_the_gap_rule_follows_the_policy_and_can_be_switched_off():
    closes = _with_gaps({"TWO": [10, 11], "HALTED": [20, 21, 22]})
    loose = apply_health_policy(closes, HealthPolicy(max_missing_share=0.5, max_gap_sessions=2), min_history=10)
    assert _verdict(loose, "TWO")["status"] == "kept"
    assert (_verdict(loose, "HALTED")["reason"], _verdict(loose, "HALTED")["threshold"]) == ("gap", 2.0)
    off = apply_health_policy(closes, HealthPolicy(max_missing_share=0.5, max_gap_sessions=None), min_history=10)
    assert set(off.verdicts["reason"]) == {"ok"}
    # the missing-share rule still applies after the gap rule: 3 of 41 closes > 5 %
    strict = apply_health_policy(closes, HealthPolicy(max_missing_share=0.05, max_gap_sessions=None), min_history=10)
    assert _verdict(strict, "HALTED")["reason"] == "missing_data"
