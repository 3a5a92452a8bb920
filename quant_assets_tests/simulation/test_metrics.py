"""Golden-number and cross-library tests for quant_assets.simulation.metrics and the
inline-PNG chart helpers in quant_assets.meta.plots."""

from __future__ import annotations

import base64
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from quant_assets.simulation.metrics import (
    af_dist,
    annualisation_factor,
    beta,
    concentration,
    cvar,
    drawdowns,
    performance,
    stress_alpha,
    value_at_risk,
)

TINY = pd.Series([0.01, -0.02, 0.03, 0.0, 0.01], index=pd.bdate_range("2024-01-01", periods=5))
LEGACY_KEYS = {"days", "total_return", "cagr", "ann_vol", "sharpe", "max_drawdown"}


# --- golden values on the reference's verified 5-day series --------------------------------------


def test_tiny_series_golden():
    p = performance(TINY)
    assert LEGACY_KEYS <= set(p)
    assert p["days"] == 5 and p["annualisation"] == 252
    assert p["total_return"] == pytest.approx(0.02968894, abs=1e-12)  # 1.01 * 0.98 * 1.03 * 1.01 - 1
    assert p["max_drawdown"] == pytest.approx(-0.02, abs=1e-15)  # 1.01 -> 0.9898
    assert p["ann_return"] == pytest.approx(1.512, abs=1e-12)  # mean 0.006 x 252
    sd = math.sqrt(sum((x - 0.006) ** 2 for x in TINY) / 4)  # 0.018166
    assert p["ann_vol"] == pytest.approx(sd * math.sqrt(252), abs=1e-12)
    assert p["ann_vol"] == pytest.approx(0.2884, abs=5e-5)
    assert p["sharpe"] == pytest.approx(0.006 / sd * math.sqrt(252), abs=1e-12)  # 5.243 (unclipped)
    # downside deviation vs 0: sqrt(0.02^2 / 4) = 0.01
    assert p["sortino"] == pytest.approx(0.006 / 0.01 * math.sqrt(252), abs=1e-12)
    cagr = 1.02968894 ** (252 / 5) - 1
    assert p["cagr"] == pytest.approx(cagr, rel=1e-9)
    assert p["calmar"] == pytest.approx(cagr / 0.02, rel=1e-9)  # CAGR / |MDD|
    # 5 days: the 5% tail is a quarter of the worst day -> VaR = CVaR = the -2% day, as a positive loss
    assert p["var95"] == pytest.approx(0.02, abs=1e-15) and p["cvar95"] == pytest.approx(0.02, abs=1e-15)


def test_cvar_fractional_tail_and_var_rank():
    r = pd.Series(np.arange(1, 41, dtype=float) / -100.0)  # -0.01 ... -0.40, n = 40, tail mass 2 days
    assert cvar(r) == pytest.approx((0.40 + 0.39) / 2, abs=1e-15)
    assert value_at_risk(r) == pytest.approx(0.38, abs=1e-15)  # the (floor(2) + 1) = 3rd worst day
    r30 = pd.Series(np.arange(1, 31, dtype=float) / -100.0)  # tail mass 1.5 days
    assert cvar(r30) == pytest.approx((0.30 + 0.5 * 0.29) / 1.5, abs=1e-15)


def test_drawdown_counts_a_first_day_loss_and_is_compounded():
    dd = drawdowns(pd.Series([-0.5, 1.0, -0.5]))
    np.testing.assert_allclose(dd.to_numpy(), [-0.5, 0.0, -0.5], atol=1e-15)
    assert performance(pd.Series([0.5, -0.5, -0.5]))["max_drawdown"] == pytest.approx(-0.75, abs=1e-15)
    assert performance(pd.Series([0.1, -1.0, 0.0]))["max_drawdown"] == -1.0  # never below -100%


def test_stitched_not_averaged_window_annualisation():
    # -40% over 10 days then 240 flat days; stitched CAGR is the 250-day compounding, not the
    # average of "annualised" windows (the 10-day window alone annualises to about -100%).
    r = pd.Series([0.6**0.1 - 1] * 10 + [0.0] * 240)
    p = performance(r)
    assert p["total_return"] == pytest.approx(-0.4, abs=1e-12)
    assert p["cagr"] == pytest.approx(0.6 ** (252 / 250) - 1, abs=1e-12)
    assert performance(r[:10])["cagr"] < -0.999  # what averaging would have mixed in


# --- annualisation --------------------------------------------------------------------------------


def test_annualisation_factor_inference():
    assert annualisation_factor(pd.bdate_range("2024-01-01", periods=10)) == 252
    assert annualisation_factor(pd.date_range("2024-01-01", periods=10, freq="D")) == 365
    assert annualisation_factor(pd.RangeIndex(10)) == 252
    assert annualisation_factor(pd.Index([dt.date(2024, 1, 5), dt.date(2024, 1, 6)])) == 365  # a Saturday
    assert annualisation_factor(pd.Index([dt.date(2024, 1, 4), dt.date(2024, 1, 5)])) == 252
    assert annualisation_factor(pd.DatetimeIndex(["2024-01-06"], tz="UTC")) == 365
    assert annualisation_factor(pd.Index([])) == 252


def test_crypto_series_annualises_with_365_unless_overridden():
    rng = np.random.default_rng(3)
    r = pd.Series(rng.normal(0.001, 0.02, 60), index=pd.date_range("2024-01-01", periods=60, freq="D"))
    p, p252 = performance(r), performance(r, annualisation=252)
    assert p["annualisation"] == 365 and p252["annualisation"] == 252
    assert p["ann_vol"] == pytest.approx(r.std(ddof=1) * math.sqrt(365), rel=1e-12)
    assert p["sharpe"] / p252["sharpe"] == pytest.approx(math.sqrt(365 / 252), rel=1e-12)


# --- degenerate inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [pd.Series(dtype=float), pd.Series([np.nan, np.nan]), [], [0.01]])
def test_empty_and_one_row_give_nan_not_errors(data):
    p = performance(
        data, benchmark=pd.Series([0.01]), weights_history=pd.Series(dtype=float), turnover=pd.Series(dtype=float)
    )
    assert LEGACY_KEYS <= set(p)
    for k in (
        "cagr",
        "ann_return",
        "ann_vol",
        "sharpe",
        "sortino",
        "calmar",
        "var95",
        "cvar95",
        "beta",
        "turnover",
        "hhi",
        "effective_n",
        "af_dist",
        "stress_alpha",
    ):
        assert math.isnan(p[k]), k
    assert p["af_dist_reason"].startswith("insufficient") and p["stress_alpha_reason"].startswith("insufficient")
    if p["days"] == 1:
        assert p["total_return"] == pytest.approx(0.01) and p["max_drawdown"] == 0.0
    else:
        assert p["days"] == 0 and math.isnan(p["total_return"]) and math.isnan(p["max_drawdown"])


def test_constant_series_has_nan_ratios():
    p = performance(pd.Series([0.0] * 10))
    assert p["ann_vol"] == 0.0 and math.isnan(p["sharpe"]) and math.isnan(p["sortino"]) and math.isnan(p["calmar"])
    assert p["max_drawdown"] == 0.0 and p["total_return"] == 0.0


# --- turnover, concentration, beta ----------------------------------------------------------------


def test_turnover_hhi_effective_n():
    w = pd.Series({"a": 0.5, "b": 0.25, "c": 0.25})
    hhi, n_eff = concentration(w)
    assert hhi == pytest.approx(0.375, abs=1e-15) and n_eff == pytest.approx(1 / 0.375, abs=1e-12)
    hist = pd.DataFrame([[1.0, 0.0], [0.5, 0.5]], columns=["a", "b"])
    assert concentration(hist) == pytest.approx((0.75, 1.5), abs=1e-15)  # means over rebalances
    assert concentration(pd.Series({"a": 0.3, "b": -0.3}))[1] == pytest.approx(2.0)  # gross-normalised
    p = performance(TINY, weights_history=hist, turnover=pd.Series([1.0, 0.2, 0.3]))
    assert p["turnover"] == pytest.approx(0.5, abs=1e-15)
    assert p["hhi"] == pytest.approx(0.75) and p["effective_n"] == pytest.approx(1.5)


def test_effective_n_matches_skfolio():
    from skfolio import Portfolio

    w = np.array([0.4, 0.3, 0.2, 0.1])
    X = pd.DataFrame(np.random.default_rng(0).normal(0, 0.01, (30, 4)), index=pd.bdate_range("2024-01-01", periods=30))
    assert concentration(pd.Series(w))[1] == pytest.approx(Portfolio(X, weights=w).effective_number_assets, rel=1e-12)


def test_beta_golden_and_alignment():
    rng = np.random.default_rng(1)
    idx = pd.bdate_range("2024-01-01", periods=50)
    m = pd.Series(rng.normal(0, 0.01, 50), index=idx)
    assert beta(2.0 * m + 0.001, m) == pytest.approx(2.0, abs=1e-12)
    noise = pd.Series(rng.normal(0, 0.01, 50), index=idx)
    assert beta(0.5 * m + noise, m) == pytest.approx(np.polyfit(m, 0.5 * m + noise, 1)[0], abs=1e-12)
    # only common dates count: the market's extra days are ignored
    longer = pd.concat([m, pd.Series([0.5], index=[pd.Timestamp("2030-01-01")])])
    assert beta(2.0 * m, longer) == pytest.approx(2.0, abs=1e-12)
    assert math.isnan(beta(m, pd.Series(0.0, index=idx)))  # flat market
    assert performance(2.0 * m, benchmark=m)["beta"] == pytest.approx(2.0, abs=1e-12)


# --- af_dist and stress_alpha ----------------------------------------------------------------


def test_af_dist_golden_on_distinct_values():
    rng = np.random.default_rng(7)
    r = pd.Series(rng.normal(0.0, 0.01, 200), index=pd.bdate_range("2020-01-01", periods=200))
    x = np.sort(r.to_numpy())
    # n = 200 distinct values: the 95% quantile falls between x[189] and x[190] -> right tail x[190:];
    # the 5% quantile between x[9] and x[10] -> left tail x[:10]
    gain, loss = x[190:].mean(), abs(x[:10].mean())
    n = 200
    skew = n / ((n - 1) * (n - 2)) * (((x - x.mean()) / x.std(ddof=1)) ** 3).sum()
    res = af_dist(r)
    assert res["reason"] == "" and res["n"] == 200
    assert res["tail_gain"] == pytest.approx(gain, abs=1e-15)
    assert res["tail_loss"] == pytest.approx(loss, abs=1e-15)
    assert res["skew"] == pytest.approx(skew, abs=1e-12)
    assert res["af_dist"] == pytest.approx(skew + math.log(gain / (loss + 1e-12) + 1e-12), abs=1e-12)
    assert performance(r)["af_dist"] == pytest.approx(res["af_dist"], abs=1e-15)


def test_af_dist_ranks_right_skew_above_left_skew_and_flags_non_positive_gain():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 0.005, 200)
    jumps = rng.choice(200, size=10, replace=False)
    up, down = base.copy(), base.copy()
    up[jumps] += 0.05
    down[jumps] -= 0.05
    a_up, a_down = af_dist(pd.Series(up))["af_dist"], af_dist(pd.Series(down))["af_dist"]
    assert a_up >= 0.25 > 0 > a_down  # strong vs fragile bands
    never_up = af_dist(pd.Series(-np.abs(base)))
    assert never_up["tail_asym"] == 0.0 and never_up["af_dist"] < -20  # ln(1e-12)


def test_af_dist_minimum_samples():
    r = pd.Series(np.random.default_rng(2).normal(0, 0.01, 99))
    res = af_dist(r)
    assert math.isnan(res["af_dist"]) and res["reason"] == "insufficient: 99 observations < 100"
    # ties: 120 zeros still give tails thanks to the jitter (need min(10, floor(0.05 * 120)) = 6)
    zeros = af_dist(pd.Series(np.zeros(120)))
    assert zeros["reason"] == "" and zeros["tail_gain"] == 0.0 and zeros["tail_asym"] == 0.0


def test_stress_alpha_golden():
    rng = np.random.default_rng(5)
    idx = pd.bdate_range("2020-01-01", periods=120)
    ref = pd.Series(rng.permutation(np.linspace(-0.05, 0.05, 120)), index=idx)
    strat = 0.5 * ref  # half the market: loses less when it crashes
    res = stress_alpha(strat, ref)
    x = np.sort(ref.to_numpy())
    stress = x[:12]  # 10% quantile of 120 distinct values lies between x[11] and x[12]
    calm = x[12:]
    assert res["stress_days"] == 12 and res["n"] == 120 and res["reason"] == ""
    assert res["stress_alpha"] == pytest.approx(-0.5 * stress.mean(), abs=1e-15)
    assert res["calm_alpha"] == pytest.approx(-0.5 * calm.mean(), abs=1e-15)
    assert res["stress_delta"] == pytest.approx(res["stress_alpha"] - res["calm_alpha"], abs=1e-15)
    assert res["stress_hit_rate"] == 1.0
    p = performance(strat, benchmark=ref)
    assert p["stress_alpha"] == pytest.approx(res["stress_alpha"], abs=1e-15) and p["stress_alpha_reason"] == ""


def test_stress_alpha_minimum_samples_and_date_alignment():
    idx = pd.bdate_range("2020-01-01", periods=150)
    ref = pd.Series(np.linspace(-0.05, 0.05, 150), index=idx)
    res = stress_alpha(ref.iloc[:99], ref)
    assert math.isnan(res["stress_alpha"]) and res["reason"] == "insufficient: 99 common observations < 100"
    # enough days but too few stress days (5% cut of 150 distinct days -> 8 < 10)
    few = stress_alpha(ref, ref, q_stress=0.05)
    assert math.isnan(few["stress_alpha"]) and few["reason"] == "insufficient: 8 stress days < 10"
    # ties at the cut all count as stress: a flat reference makes every day a stress day, no calm days
    flat = pd.Series(0.0, index=idx)
    flat.iloc[:5] = -0.1
    ties = stress_alpha(ref, flat)
    assert ties["stress_days"] == 150 and math.isnan(ties["calm_alpha"]) and math.isnan(ties["stress_delta"])
    assert ties["stress_alpha"] == pytest.approx((ref - flat).mean(), abs=1e-15)
    shifted = pd.Series(ref.to_numpy(), index=idx + pd.Timedelta(days=1000))
    assert stress_alpha(ref, shifted)["n"] == 0
    assert performance(ref)["stress_alpha_reason"] == "no benchmark"


# --- cross-check against skfolio on real data ------------------------------------------


@pytest.fixture(scope="module")
def sp500_ew():
    from skfolio import Portfolio
    from skfolio.datasets import load_sp500_dataset
    from skfolio.preprocessing import prices_to_returns

    X = prices_to_returns(load_sp500_dataset())
    w = np.full(X.shape[1], 1.0 / X.shape[1])
    port = Portfolio(X, weights=w, compounded=True, min_acceptable_return=0.0)
    return pd.Series(port.returns, index=X.index), port


def test_cross_check_skfolio_sp500_equal_weight(sp500_ew):
    r, port = sp500_ew
    p = performance(r)
    assert p["days"] == 8312 and p["annualisation"] == 252  # exchange calendar inferred
    assert p["sharpe"] == pytest.approx(port.annualized_sharpe_ratio, rel=1e-9)
    assert p["ann_vol"] == pytest.approx(port.annualized_standard_deviation, rel=1e-9)
    assert p["ann_return"] == pytest.approx(port.annualized_mean, rel=1e-9)
    assert p["sortino"] == pytest.approx(port.annualized_sortino_ratio, rel=1e-9)
    assert p["cvar95"] == pytest.approx(port.cvar, rel=1e-3)
    assert p["var95"] == pytest.approx(port.value_at_risk, rel=1e-3)
    assert p["max_drawdown"] == pytest.approx(-port.max_drawdown, rel=1e-9)  # skfolio: positive number
    assert p["total_return"] == pytest.approx(port.cumulative_returns[-1] - 1.0, rel=1e-9)
    # no CAGR in skfolio; its calmar is per-period mean / MDD, ours is CAGR / |MDD|
    assert p["cagr"] == pytest.approx(np.prod(1 + r.to_numpy()) ** (252 / len(r)) - 1, rel=1e-12)
    assert p["calmar"] == pytest.approx(p["cagr"] / port.max_drawdown, rel=1e-9)
    assert port.calmar_ratio == pytest.approx(r.mean() / port.max_drawdown, rel=1e-9)
    assert p["calmar"] / port.calmar_ratio > 100  # different definitions: never compare them
    assert np.isfinite(p["af_dist"]) and p["af_dist_reason"] == ""


def test_cross_check_skfolio_uncompounded_drawdown_differs(sp500_ew):
    from skfolio import Portfolio

    r, port = sp500_ew
    simple = Portfolio(r.to_frame("x"), weights=np.array([1.0]))  # default compounded=False
    assert -performance(r)["max_drawdown"] == pytest.approx(port.max_drawdown, rel=1e-9)
    assert abs(port.max_drawdown - simple.max_drawdown) > 1e-3  # summed-returns drawdown is another number


# --- plots ----------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(md: str, title: str) -> bytes:
    prefix = f"![{title}](data:image/png;base64,"
    assert md.startswith(prefix) and md.endswith(")")
    assert len(md) < 60_000
    raw = base64.b64decode(md[len(prefix) : -1], validate=True)
    assert raw[:8] == PNG_MAGIC
    return raw


def _ihdr_size(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


@pytest.fixture(scope="module")
def long_history():
    idx = pd.bdate_range("1995-01-01", periods=7000)
    rng = np.random.default_rng(0)
    return {f"strategy_{i}": pd.Series(rng.normal(0.0003, 0.012, len(idx)), index=idx) for i in range(8)}


def test_equity_and_drawdown_charts_are_small_pngs(long_history):
    from quant_assets.meta.plots import drawdowns_md, equity_curves_md

    raw = _png(equity_curves_md(long_history, "Wealth"), "Wealth")
    w, h = _ihdr_size(raw)
    assert w <= 7 * 80 and h <= 3 * 80  # 7 x 3 in at 80 dpi, trimmed
    _png(drawdowns_md(long_history, "Drawdown"), "Drawdown")
    _png(equity_curves_md({}, "Nothing"), "Nothing")


def test_line_plot_and_timeline():
    from quant_assets.meta.plots import line_plot_md, timeline_md

    _png(line_plot_md([0.1, 0.2, 0.3], {"hrp": [1, 2, 3], "erc": [3, 2, 1]}, "Frontier", "vol", "return"), "Frontier")
    idx = pd.bdate_range("2020-01-01", periods=400)
    labels = pd.Series(np.repeat(["QUIET", "NORMAL", "TURBULENT", "CRISIS"], 100), index=idx)
    _png(timeline_md(labels, "Regime"), "Regime")
    _png(timeline_md(pd.Series(["NORMAL"], index=[dt.date(2024, 1, 2)]), "One day"), "One day")
    _png(timeline_md(pd.Series(dtype=str), "Empty"), "Empty")


def test_title_brackets_do_not_break_markdown():
    from quant_assets.meta.plots import line_plot_md

    md = line_plot_md([1, 2], {"a": [1, 2]}, "weights [hrp]")
    assert md.startswith("![weights (hrp)](data:image/png;base64,")


def test_plots_leave_no_open_figures(long_history):
    import matplotlib.pyplot as plt

    from quant_assets.meta.plots import drawdowns_md

    before = len(plt.get_fignums())
    drawdowns_md(long_history, "x")
    assert len(plt.get_fignums()) == before
