"""Regime detector: constructed series and the bundled S&P 500 anchors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_assets.selection.regime import REGIME_LABELS, RegimeSettings, detect_regime, regime_timeline


@pytest.fixture(scope="module")
def sp500_timeline() -> pd.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    returns = load_sp500_dataset().pct_change().iloc[1:]
    return regime_timeline(returns, settings=RegimeSettings(), step=5)


def test_settings_frozen_and_validated():
    s = RegimeSettings()
    with pytest.raises(ValidationError):
        s.crisis_at = 3.0
    with pytest.raises(ValidationError):
        RegimeSettings(unknown=1)
    with pytest.raises(ValidationError):
        RegimeSettings(turbulent_at=2.0, crisis_at=1.5)


def test_flat_series_is_quiet():
    r = detect_regime(np.full(200, 1e-4))
    assert r.label == "QUIET" and r.score < 0.01


def test_iid_noise_is_normal():
    for seed in range(5):
        x = np.random.default_rng(seed).normal(0.0, 0.01, 200)  # ~16% annualised
        r = detect_regime(x)
        assert r.label == "NORMAL", (seed, r)
        assert 0.5 < r.score < 1.0
    # vol_ratio uses only 10 days, so a noise window whose last 10 days happen to be calm
    # (or wild) can read QUIET (or TURBULENT); most seeds read NORMAL.
    labels = [detect_regime(np.random.default_rng(s).normal(0, 0.01, 200)).label for s in range(100)]
    assert labels.count("NORMAL") >= 75 and labels.count("CRISIS") == 0


def test_late_vol_shock_is_crisis():
    x = np.random.default_rng(0).normal(0.0, 0.01, 200)
    x[-10:] *= 5
    r = detect_regime(x)
    assert r.label == "CRISIS" and r.vol_ratio > 3
    # Without the level term (the reference score) the same shock still reads CRISIS.
    assert detect_regime(x, RegimeSettings(level_weight=0.0)).label == "CRISIS"


def test_calm_low_vol_series_is_quiet():
    x = np.random.default_rng(1).normal(0.0, 0.004, 252)  # ~6% annualised, like 2017
    assert detect_regime(x).label == "QUIET"


def test_short_input_and_nan():
    r = detect_regime(np.full(19, 0.01))
    assert r.label == "NORMAL" and math.isnan(r.score) and r.n_obs == 19
    x = np.random.default_rng(2).normal(0, 0.01, 300)
    with_nan = pd.Series(np.insert(x, [3, 100], np.nan))
    assert detect_regime(with_nan) == detect_regime(x)
    assert detect_regime(x).n_obs == 252  # trailing lookback only


def test_timeline_matches_point_in_time_detect():
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2015-01-01", periods=400)
    wide = pd.DataFrame(rng.normal(0, 0.01, (400, 5)), index=idx)
    wide.iloc[5, 2] = np.nan
    tl = regime_timeline(wide, step=7)
    mean = wide.mean(axis=1)
    for d in tl.index[::6]:
        r = detect_regime(mean.loc[:d])
        assert tl.loc[d, "label"] == r.label
        assert tl.loc[d, "score"] == pytest.approx(r.score, rel=1e-12)
    # Explicit dates between rows use the last row at or before them.
    tl2 = regime_timeline(wide, dates=[idx[300] + pd.Timedelta(hours=12)])
    assert tl2["score"].iloc[0] == pytest.approx(detect_regime(mean.loc[: idx[300]]).score, rel=1e-12)
    # Future rows do not change a reading.
    altered = wide.copy()
    altered.iloc[301:] *= 10
    assert regime_timeline(altered, dates=[idx[300]])["score"].iloc[0] == tl2["score"].iloc[0]


def test_sp500_crisis_anchors(sp500_timeline):
    tl = sp500_timeline
    assert (tl.loc["2008-10", "label"] == "CRISIS").all()
    assert (tl.loc["2020-03", "label"] == "CRISIS").all()
    assert (tl.loc["2017", "label"] == "QUIET").mean() > 0.6
    assert not (tl.loc["2017", "label"].isin(["TURBULENT", "CRISIS"])).any()


def test_sp500_every_label_reachable(sp500_timeline):
    freq = sp500_timeline["label"].value_counts(normalize=True)
    assert set(freq.index) == set(REGIME_LABELS)
    assert 0.005 < freq["CRISIS"] < 0.05
    assert 0.03 < freq["TURBULENT"] < 0.25
    assert 0.15 < freq["QUIET"] < 0.45
    assert freq["NORMAL"] > 0.4
