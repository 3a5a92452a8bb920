"""Exact-value tests for quant_assets.features (domain-spec §2 definitions)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quant_assets.features import (
    FEATURE_COLUMNS,
    compute_features,
    efficiency_ratio,
    efficiency_ratio_matrix,
    hurst_rs,
    hurst_rs_matrix,
    permutation_entropy,
    permutation_entropy_matrix,
)

LN2_OVER_LN6 = math.log(2) / math.log(6)


def _frame(values: np.ndarray, columns=None) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    cols = columns if columns is not None else [f"S{i}" for i in range(values.shape[1])]
    idx = pd.bdate_range("2020-01-01", periods=values.shape[0])
    return pd.DataFrame(values, index=idx, columns=cols)


# --- permutation entropy ---------------------------------------------------------------


def test_permutation_entropy_monotone_is_zero():
    assert permutation_entropy(np.arange(50.0)) == 0.0
    assert permutation_entropy(-np.arange(50.0), order=3) == 0.0


def test_permutation_entropy_alternating_order3():
    x = np.array([1.0, -1.0] * 10)
    assert permutation_entropy(x, order=3) == pytest.approx(LN2_OVER_LN6, abs=1e-12)


def test_permutation_entropy_iid_normal():
    x = np.random.default_rng(0).standard_normal(120)
    h = permutation_entropy(x, order=5)
    assert h == pytest.approx(0.88, abs=0.02)
    assert 0.0 <= h <= 1.0


def test_permutation_entropy_nan_handling():
    # Only windows free of NaN count: [1,2,3], [5,6,7], [6,7,8] -> one pattern.
    x = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0, 8.0])
    assert permutation_entropy(x, order=3) == 0.0
    # Fewer than `order` non-NaN values -> NaN.
    assert math.isnan(permutation_entropy(np.array([1.0, np.nan, 2.0, 3.0]), order=4))
    # Enough values but every window hits a NaN -> 0.0.
    assert permutation_entropy(np.array([1.0, 2.0, np.nan, 3.0, 4.0]), order=3) == 0.0


def test_permutation_entropy_delay():
    # delay=2 on an alternating series samples a constant sub-series -> one pattern.
    x = np.array([1.0, -1.0] * 10)
    assert permutation_entropy(x, order=3, delay=2) == 0.0


# --- Hurst R/S ---------------------------------------------------------------------------


def test_hurst_constant_is_half():
    assert hurst_rs(np.ones(64)) == 0.5


def test_hurst_too_short_is_nan():
    assert math.isnan(hurst_rs(np.random.default_rng(0).standard_normal(31)))


def test_hurst_iid_normal():
    # Pinned seed. Classic R/S is biased upward on short segments: over many seeds the
    # n=256 estimate averages ~0.57 (5-95%: 0.48-0.66), so only the pinned value is exact.
    x = np.random.default_rng(1).standard_normal(256)
    h = hurst_rs(x)
    assert h == pytest.approx(0.4859261402560, abs=1e-9)
    assert 0.47 <= h <= 0.5


def test_hurst_ar1_persistent():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(2000)
    x = np.zeros(2000)
    for t in range(1, 2000):
        x[t] = 0.6 * x[t - 1] + e[t]
    h = hurst_rs(x)
    assert h == pytest.approx(0.6758801608761, abs=1e-9)
    assert h > 0.6


def test_hurst_drops_nan():
    x = np.random.default_rng(3).standard_normal(100)
    with_nan = np.insert(x, [5, 40, 77], np.nan)
    assert hurst_rs(with_nan) == hurst_rs(x)


# --- efficiency ratio --------------------------------------------------------------------


def test_efficiency_ratio_known_values():
    assert efficiency_ratio(np.full(10, 0.01)) == 1.0
    assert efficiency_ratio(np.array([1.0, -1.0] * 6)) == 0.0
    assert efficiency_ratio(np.zeros(12)) == 0.0
    assert math.isnan(efficiency_ratio(np.full(9, 0.01)))
    # |0.04 - 0.01 ...|: path 10 * 0.01, net (7 - 3) * 0.01
    r = np.array([0.01] * 7 + [-0.01] * 3)
    assert efficiency_ratio(r) == pytest.approx(0.4, abs=1e-12)


# --- matrix versions agree with the 1-D versions -----------------------------------------


@pytest.fixture(scope="module")
def random_matrix() -> np.ndarray:
    return np.random.default_rng(42).standard_normal((300, 7))


def test_permutation_entropy_matrix_matches_1d(random_matrix):
    for order, delay in [(5, 1), (3, 1), (4, 2)]:
        one_d = [permutation_entropy(random_matrix[:, j], order, delay) for j in range(7)]
        np.testing.assert_allclose(
            permutation_entropy_matrix(random_matrix, order, delay), one_d, rtol=1e-12
        )


def test_permutation_entropy_matrix_nan_column_matches_1d(random_matrix):
    X = random_matrix.copy()
    X[[3, 50, 51, 200], 2] = np.nan
    one_d = [permutation_entropy(X[:, j]) for j in range(7)]
    np.testing.assert_allclose(permutation_entropy_matrix(X), one_d, rtol=1e-12)


def test_hurst_matrix_matches_1d(random_matrix):
    one_d = [hurst_rs(random_matrix[:, j]) for j in range(7)]
    np.testing.assert_allclose(hurst_rs_matrix(random_matrix), one_d, rtol=1e-12)


def test_efficiency_matrix_matches_1d(random_matrix):
    one_d = [efficiency_ratio(random_matrix[:, j]) for j in range(7)]
    np.testing.assert_allclose(efficiency_ratio_matrix(random_matrix), one_d, rtol=1e-12)


# --- compute_features --------------------------------------------------------------------


def test_compute_features_hand_made():
    # 25 rows; window 20. A: constant 0.001. B: alternating +0.01 / -0.01.
    a = np.full(25, 0.001)
    b = np.array([0.01, -0.01] * 13)[:25]
    f = compute_features(_frame(np.column_stack([a, b]), ["A", "B"]), window=20)

    assert list(f.columns) == FEATURE_COLUMNS
    assert f.index.name == "symbol"
    assert list(f.index) == ["A", "B"]
    assert (f.dtypes == float).all()

    # momentum = mean of last 20 rows x 252, exactly.
    assert f.loc["A", "momentum"] == np.mean(a[-20:]) * 252
    assert f.loc["A", "momentum"] == pytest.approx(0.252, rel=1e-14)
    assert f.loc["B", "momentum"] == pytest.approx(0.0, abs=1e-15)

    # volatility: A flat; B last 20 rows are 10 x (+0.01) and 10 x (-0.01), mean 0,
    # sample var = 20 * 1e-4 / 19.
    assert f.loc["A", "volatility"] == pytest.approx(0.0, abs=1e-15)
    expected_vol_b = 0.01 * math.sqrt(20 / 19) * math.sqrt(252)
    assert f.loc["B", "volatility"] == pytest.approx(expected_vol_b, rel=1e-12)
    assert f.loc["B", "stability"] == pytest.approx(1 / (expected_vol_b + 1e-9), rel=1e-12)
    assert f.loc["A", "stability"] == pytest.approx(1e9, rel=1e-6)

    # return_20d = prod(1 + r) - 1 over the last 20 rows.
    assert f.loc["A", "return_20d"] == pytest.approx(1.001**20 - 1, rel=1e-12)
    assert f.loc["B", "return_20d"] == pytest.approx((1.01 * 0.99) ** 10 - 1, rel=1e-12)

    # entropy (order 5): constant -> single pattern; alternating -> two equal patterns.
    assert f.loc["A", "entropy"] == 0.0
    assert f.loc["B", "entropy"] == pytest.approx(math.log(2) / math.log(120), abs=1e-12)

    assert f.loc["A", "efficiency"] == 1.0
    assert f.loc["B", "efficiency"] == 0.0

    # 25 rows < 32 -> Hurst undefined.
    assert f["hurst"].isna().all()
    assert (f["n_obs"] == 25.0).all()


def test_compute_features_windows_and_full_hurst():
    X = np.random.default_rng(7).normal(0.0, 0.01, (200, 3))
    f = compute_features(_frame(X), window=60)
    for j, sym in enumerate(f.index):
        col = X[:, j]
        assert f.loc[sym, "momentum"] == np.mean(col[-60:]) * 252
        assert f.loc[sym, "volatility"] == pytest.approx(
            np.std(col[-60:], ddof=1) * math.sqrt(252), rel=1e-12
        )
        assert f.loc[sym, "entropy"] == pytest.approx(permutation_entropy(col[-60:]), rel=1e-12)
        assert f.loc[sym, "efficiency"] == pytest.approx(efficiency_ratio(col[-60:]), rel=1e-12)
        assert f.loc[sym, "hurst"] == pytest.approx(hurst_rs(col), rel=1e-12)
        assert f.loc[sym, "return_20d"] == pytest.approx(np.prod(1 + col[-20:]) - 1, rel=1e-12)
        assert f.loc[sym, "n_obs"] == 200.0


def test_compute_features_empty_input():
    f = compute_features(pd.DataFrame(index=pd.DatetimeIndex([])))
    assert list(f.columns) == FEATURE_COLUMNS
    assert len(f) == 0
    assert f.index.name == "symbol"
    f2 = compute_features(_frame(np.random.default_rng(0).standard_normal((30, 0))))
    assert list(f2.columns) == FEATURE_COLUMNS and len(f2) == 0


def test_compute_features_short_input_does_not_raise():
    one = compute_features(_frame([[0.01, -0.02]], ["A", "B"]))
    assert one.loc["A", "momentum"] == pytest.approx(0.01 * 252, rel=1e-14)
    for c in ["volatility", "stability", "hurst", "efficiency", "return_20d"]:
        assert one[c].isna().all(), c
    assert (one["entropy"] == 1.0).all()  # unknown entropy counts as noise
    assert (one["n_obs"] == 1.0).all()

    zero = compute_features(_frame(np.empty((0, 2)), ["A", "B"]))
    assert list(zero.index) == ["A", "B"]
    assert zero.drop(columns=["entropy", "n_obs"]).isna().all().all()
    assert (zero["entropy"] == 1.0).all() and (zero["n_obs"] == 0.0).all()


def test_compute_features_is_point_in_time():
    returns = _frame(np.random.default_rng(11).normal(0.0, 0.01, (180, 4)))
    k = 130
    before = compute_features(returns.iloc[:k])

    altered = returns.copy()
    altered.iloc[k:] = np.random.default_rng(99).normal(0.05, 0.2, (180 - k, 4))
    after = compute_features(altered.iloc[:k])
    pd.testing.assert_frame_equal(before, after, check_exact=True)

    # Sanity: the alteration does matter once those rows are visible.
    assert not compute_features(returns).equals(compute_features(altered))
    # And the input frame itself is not modified.
    pd.testing.assert_frame_equal(returns.iloc[:k], altered.iloc[:k], check_exact=True)
