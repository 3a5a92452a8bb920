"""Exact-value tests for quant_assets.selection.features (the definitions in its docstrings)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from quant_assets.selection.features import (
    FEATURE_COLUMNS,
    adf_pvalue,
    adf_pvalue_matrix,
    antifragility_scores,
    compute_features,
    cvar_matrix,
    efficiency_ratio,
    efficiency_ratio_matrix,
    haar_turbulence,
    haar_turbulence_matrix,
    hurst_rs,
    hurst_rs_matrix,
    permutation_entropy,
    permutation_entropy_matrix,
    technical_ratings_matrix,
    vol_clustering_matrix,
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
        np.testing.assert_allclose(permutation_entropy_matrix(random_matrix, order, delay), one_d, rtol=1e-12)


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
    assert all(t == np.float64 for t in f.dtypes)

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
        assert f.loc[sym, "volatility"] == pytest.approx(np.std(col[-60:], ddof=1) * math.sqrt(252), rel=1e-12)
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
    defaults = {
        "entropy": 1.0,
        "n_obs": 0.0,
        "hurst_clean": 0.5,
        "skew": 0.0,
        "kurtosis": 0.0,
        "cvar": -0.1,
        "adf_pvalue": 0.5,
        "turbulence": 0.5,
        "antifragility": 0.0,
        "vol_clustering": 0.0,
    }
    assert zero.drop(columns=list(defaults)).isna().all().all()
    for col, value in defaults.items():
        assert (zero[col] == value).all(), col


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


# --- Haar turbulence ----------------------------------------------------------------------


def test_haar_turbulence_white_noise_and_sine():
    noise = np.random.default_rng(5).standard_normal(2**16)  # approx share 1/8 +- ~0.002
    assert haar_turbulence(noise) == pytest.approx(0.875, abs=0.006)
    sine = np.sin(np.linspace(0, 4 * np.pi, 128))
    assert haar_turbulence(sine) < 0.1  # ~0.051: only the sine's slope leaks into details
    assert haar_turbulence(np.zeros(16)) == 0.5  # zero energy
    assert haar_turbulence(np.ones(7)) == 0.5  # too short
    # Pure alternation lives entirely in the finest detail band.
    assert haar_turbulence(np.array([1.0, -1.0] * 8)) == pytest.approx(1.0, abs=1e-15)


def test_haar_turbulence_odd_length_matches_symmetric_padding():
    # pywt "symmetric" mode for Haar pads an odd tail by repeating the last sample:
    # [1, 2, 3, 4, 5, 6, 7, 8, 9] -> level 3. Energy is conserved on the padded signal.
    x = np.arange(1.0, 10.0)
    a, detail = x.copy(), 0.0
    for _ in range(3):
        if len(a) % 2:
            a = np.append(a, a[-1])
        d = (a[0::2] - a[1::2]) / math.sqrt(2)
        a = (a[0::2] + a[1::2]) / math.sqrt(2)
        detail += float(d @ d)
    assert haar_turbulence(x) == pytest.approx(detail / (detail + float(a @ a)), rel=1e-12)
    X = np.random.default_rng(1).standard_normal((99, 4))
    np.testing.assert_allclose(haar_turbulence_matrix(X), [haar_turbulence(X[:, j]) for j in range(4)])


# --- ADF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lags", [0, 1, 3])
def test_adf_pvalue_matches_statsmodels(lags):
    from statsmodels.tsa.stattools import adfuller

    rng = np.random.default_rng(21)
    series = [
        np.cumsum(rng.standard_normal(150)),  # random walk: mid-range p-value
        rng.standard_normal(120) * 0.01,  # stationary: p ~ 0
        np.cumsum(rng.standard_normal(60)) + 0.3 * rng.standard_normal(60),
    ]
    for x in series:
        ref = adfuller(x, maxlag=lags, regression="c", autolag=None, result_object=False)[1]
        assert adf_pvalue(x, lags=lags) == pytest.approx(ref, abs=1e-6)
    X = np.column_stack([s[-60:] for s in series])
    np.testing.assert_allclose(adf_pvalue_matrix(X, lags), [adf_pvalue(X[:, j], lags) for j in range(3)])


def test_mackinnon_pvalues_equal_statsmodels_bit_for_bit():
    """The copied coefficient tables are statsmodels' own, and the p-values its `mackinnonp` gives
    (a grid across both polynomials, the cut-offs and beyond them; NaN -> 0.5)."""
    from statsmodels.tsa.adfvalues import _tau_largeps, _tau_maxs, _tau_mins, _tau_smallps, _tau_stars, mackinnonp

    from quant_assets.selection import features

    assert features.TAU_SMALL_P.tolist() == list(_tau_smallps["c"][0])
    assert features.TAU_LARGE_P.tolist() == list(_tau_largeps["c"][0])
    assert (features.TAU_STAR, features.TAU_MIN, features.TAU_MAX) == (
        _tau_stars["c"][0],
        _tau_mins["c"][0],
        _tau_maxs["c"][0],
    )
    t = np.r_[np.linspace(-25.0, 5.0, 601), -1.61, -18.83, 2.74, np.nextafter(-1.61, 0)]
    got = features.mackinnon_pvalues(t)
    assert got.tolist() == [float(mackinnonp(x, regression="c", N=1)) for x in t]
    assert 0.0 in got and 1.0 in got and ((got > 0) & (got < 1)).sum() > 400
    assert features.mackinnon_pvalues(np.array([np.nan])).tolist() == [0.5]


def test_adf_pvalue_fallbacks():
    assert adf_pvalue(np.random.default_rng(0).standard_normal(19)) == 0.5  # too short
    assert adf_pvalue(np.full(50, 0.01)) == 0.5  # constant
    # Alternating series: level and lagged difference are collinear -> singular -> 0.5.
    assert adf_pvalue(np.array([1.0, -1.0] * 20)) == 0.5


# --- moments, CVaR, antifragility, clustering -------------------------------------------


def test_skew_kurtosis_match_scipy():
    rng = np.random.default_rng(8)
    X = np.column_stack([rng.standard_normal(300), rng.exponential(size=300), rng.standard_t(4, 300)])
    f = compute_features(_frame(X))
    np.testing.assert_allclose(f["skew"], scipy.stats.skew(X, axis=0), rtol=1e-10)
    np.testing.assert_allclose(f["kurtosis"], scipy.stats.kurtosis(X, axis=0), rtol=1e-10)
    assert f["skew"].iloc[1] > 1.0  # raw, signed skew (exponential is right-skewed)
    flat = compute_features(_frame(np.full((30, 1), 0.002)))
    assert flat["skew"].iloc[0] == 0.0 and flat["kurtosis"].iloc[0] == 0.0


def test_cvar_known_vector():
    r = np.arange(-20, 20, dtype=float) / 100.0  # 40 values -0.20 .. 0.19
    # 5% quantile (linear) = -0.20 + 0.05 * 39 * 0.01 = -0.1805 -> values -0.20, -0.19.
    assert cvar_matrix(r[:, None])[0] == pytest.approx(-0.195, abs=1e-15)
    assert cvar_matrix(r[:20, None])[0] == -0.1  # needs > 20 observations
    f = compute_features(_frame(r[:, None]))
    assert f["cvar"].iloc[0] == pytest.approx(-0.195, abs=1e-15)


def test_antifragility_range_and_ordering():
    rng = np.random.default_rng(3)
    n = 300
    base = rng.normal(0.0, 0.01, n)
    lottery = base.copy()
    lottery[rng.choice(n, 12, replace=False)] += 0.08  # rare big gains: right skew, fat right tail
    crash = base.copy()
    crash[rng.choice(n, 12, replace=False)] -= 0.08  # rare big losses
    f = compute_features(_frame(np.column_stack([lottery, base, crash]), ["LOT", "BASE", "CRASH"]))
    af = f["antifragility"]
    assert ((af >= 0) & (af <= 2)).all()
    assert af["LOT"] > af["BASE"] > af["CRASH"]
    assert af["LOT"] == pytest.approx(2.0, abs=1e-6)  # best on both axes, N >= 252
    assert af["CRASH"] == pytest.approx(0.0, abs=1e-6)
    # Short history shrinks the score by N/252.
    assert antifragility_scores(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 126)[1] == pytest.approx(1.0, abs=1e-6)


def test_vol_clustering():
    rng = np.random.default_rng(4)
    calm, wild = rng.normal(0, 0.005, 200), rng.normal(0, 0.05, 200)
    clustered = np.concatenate([calm, wild, calm, wild])  # |r| regimes persist
    iid = rng.normal(0, 0.01, 800)
    vc = vol_clustering_matrix(np.column_stack([clustered, iid]))
    assert vc[0] > 0.3 and abs(vc[1]) < 0.1
    assert vol_clustering_matrix(np.full((20, 1), 0.01))[0] == 0.0


# --- technical ratings ------------------------------------------------------------------


def test_ratings_trend_signs():
    n = 300
    up, down = np.full(n, 0.002), np.full(n, -0.002)
    ma, osc, allr = technical_ratings_matrix(np.column_stack([up, down, np.zeros(n)]))
    assert ma[0] == 1.0 and ma[1] == -1.0 and ma[2] == 0.0
    # Rising: momentum and MACD buy, RSI 100 overbought sells, Stoch RSI flat -> neutral.
    # Falling geometrically: RSI 0 buys, momentum sells, and MACD (price differences of a
    # decaying index shrink towards 0) turns up and buys -> also +0.25.
    assert osc[0] == pytest.approx(0.25) and osc[1] == pytest.approx(0.25)
    assert allr[0] == pytest.approx((1.0 + 0.25) / 2)
    assert np.all(np.abs([ma, osc, allr]) <= 1.0)


def test_ratings_short_history_and_rsi_oversold():
    # Only 9 price points: no MA votes, no oscillators -> NaN.
    ma, osc, allr = technical_ratings_matrix(np.full((8, 1), 0.01))
    assert np.isnan(ma[0]) and np.isnan(osc[0]) and np.isnan(allr[0])
    # 40 days: SMA/EMA 10, 20, 30 vote; a steady fall after a rise is oversold (RSI < 30).
    r = np.r_[np.full(10, 0.01), np.full(30, -0.01)]
    ma, osc, _ = technical_ratings_matrix(r[:, None])
    assert ma[0] == -1.0
    assert osc[0] == pytest.approx((1.0 + 0.0 - 1.0 - 1.0) / 4)  # RSI buy, stoch 0, mom sell, MACD sell


# --- full feature frame -------------------------------------------------------------------


def test_compute_features_new_columns():
    rng = np.random.default_rng(12)
    X = rng.normal(0.0005, 0.01, (300, 3))
    vt = pd.Series({"S0": 1e9, "S1": 2.5e8})  # S2 has no volume data
    f = compute_features(_frame(X), window=120, value_traded=vt)
    assert list(f.columns) == FEATURE_COLUMNS
    assert f.loc["S0", "liquidity"] == 1.0 and f.loc["S1", "liquidity"] == 0.5
    assert f.loc["S0", "adv"] == 1e9 and np.isnan(f.loc["S2", "adv"]) and np.isnan(f.loc["S2", "liquidity"])
    assert compute_features(_frame(X))["liquidity"].isna().all()
    for j, sym in enumerate(f.index):
        col = X[:, j]
        h = f.loc[sym, "hurst"]
        assert f.loc[sym, "hurst_clean"] == pytest.approx(min(1, max(0, 1 - 2 * abs(h - 0.5))))
        assert f.loc[sym, "return_60d"] == pytest.approx(np.prod(1 + col[-60:]) - 1, rel=1e-12)
        assert f.loc[sym, "adf_pvalue"] == pytest.approx(adf_pvalue(col[-120:]), rel=1e-12)
        assert f.loc[sym, "turbulence"] == pytest.approx(haar_turbulence(col[-120:]), rel=1e-12)
    assert f["return_60d"].notna().all()
    assert f[["rating_ma", "rating_osc", "rating_all"]].abs().le(1).all().all()
    short = compute_features(_frame(X[:30]))
    assert short["return_60d"].isna().all() and (short["hurst_clean"] == 0.5).all()


def test_compute_features_rejects_nan_and_bad_volume():
    X = np.random.default_rng(0).normal(0, 0.01, (50, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="dense"):
        compute_features(_frame(X))
    with pytest.raises(TypeError):
        compute_features(_frame(np.zeros((30, 1))), value_traded={"S0": 1.0})


def test_antifragility_of_a_short_atom_is_the_stocks_left_tail():
    from quant_assets.selection.features import antifragility_matrix
    from quant_assets.selection.funnel import synthetic_long

    rng = np.random.default_rng(3)
    calm = rng.normal(0, 0.01, 500)
    jumpy = np.where(rng.random(500) < 0.03, 0.08, 0.0) + rng.normal(0, 0.01, 500)  # rare big up days
    r = pd.DataFrame({"CALM": calm, "JUMPY": jumpy})
    longs = antifragility_matrix(r)
    shorts = antifragility_matrix(synthetic_long(r, "short"))
    assert longs[1] > longs[0]  # long the jumpy name: right skew, big good days
    assert shorts[1] < shorts[0]  # short it: those days are the short's worst
    assert np.all((0 <= longs) & (longs <= 2)) and np.all((0 <= shorts) & (shorts <= 2))


@pytest.mark.parametrize("shape", [(300, 260), (6, 3000)])  # stacked windows; a long series of few symbols
@pytest.mark.parametrize("alpha", [2.0 / 10.0, 2.0 / 21.0, 1.0 / 14.0, 2.0 / 201.0])
def test_first_order_rows_is_scipy_lfilter_bit_for_bit(alpha, shape):
    """The EMA / RMA recursion without scipy.signal (0.7 s to import) gives lfilter's exact bits,
    missing values included, so features did not move when it replaced lfilter."""
    from scipy.signal import lfilter

    from quant_assets.selection.features import _first_order_rows

    rng = np.random.default_rng(7)
    P = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.02, shape), axis=1)
    P[3, 40] = np.nan
    P[5] = 0.0
    z0 = (1.0 - alpha) * P[:, :1]
    expected, _ = lfilter([alpha], [1.0, alpha - 1.0], P, axis=1, zi=z0)
    got = _first_order_rows(P, alpha, z0)
    assert got.shape == P.shape
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(got[3, 40:]).all() and not np.isnan(got[3, :40]).any()
    assert _first_order_rows(P[:, :0], alpha, z0).shape == (shape[0], 0)
