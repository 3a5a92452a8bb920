"""quant_assets.allocation.optimise: analytic cases with regularisation off, the recorded
fallback chain, input validation (the libraries' silent failure modes), the bounded-simplex
projection and cross-library agreement on real data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from quant_assets.allocation import optimise as opt
from quant_assets.allocation.engines.base import EngineOutput
from quant_assets.allocation.optimise import (
    Attempt,
    Engine,
    RiskConfig,
    hierarchical_equal_weight,
    optimise,
    optimise_array,  # noqa: I001
    project_bounded_simplex,
    register_engine,
)

PROFILES = ["max_sharpe", "min_variance", "hrp", "equal_weight"]


def assert_valid_weights(result, columns) -> None:
    """The contract of every result: finite, >= 0, summing to 1 (unless no assets), index = input columns."""
    w = result.weights
    assert list(w.index) == list(columns)
    assert np.isfinite(w.to_numpy()).all()
    assert (w.to_numpy() >= 0).all()
    if result.profile_used != "none":
        assert abs(w.sum() - 1.0) <= 1e-9


# --- data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uncorrelated() -> pd.DataFrame:
    """sigma 1% and 2%, sample means exactly 0, sample correlation exactly 0 (252 rows)."""
    a = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], 63)
    b = 0.02 * np.tile([1.0, 1.0, -1.0, -1.0], 63)
    df = pd.DataFrame({"a": a, "b": b}, index=pd.bdate_range("2023-01-02", periods=252))
    assert df.mean().abs().max() == 0.0
    assert (df["a"] * df["b"]).sum() == 0.0
    return df


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    prices = load_sp500_dataset()
    return prices.pct_change().dropna().iloc[:500, :6]


@pytest.fixture(scope="module")
def negative_mu() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.01, (252, 3))
    x = x - x.mean(axis=0) + np.array([-0.002, -0.001, -0.003])  # every sample mean < 0 = rf
    return pd.DataFrame(x, columns=["x", "y", "z"])


# --- analytic two-asset case (regularisation off) ------------------------------------------------


ENGINE_NAMES = ["custom", "skfolio", "riskfolio", "pyportfolioopt"]
PLAIN = RiskConfig(hrp_leaf_order="plain")  # pyportfolioopt has plain leaf ordering only


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_hrp_two_uncorrelated_assets_is_inverse_variance(uncorrelated, engine):
    res = optimise(uncorrelated, "hrp", engine=engine, config=PLAIN if engine == "pyportfolioopt" else None)
    assert (res.profile_used, res.engine, res.fallback_used) == ("hrp", engine, False)
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], rtol=0, atol=1e-12)
    assert_valid_weights(res, ["a", "b"])


def test_default_engine_is_custom(uncorrelated):
    """Deliberate change: the default engine is `custom` (every profile, fastest HRP); it was skfolio."""
    res = optimise(uncorrelated, "hrp")
    assert (res.engine, res.provenance["variant"]) == ("custom", "ward/pearson/optimal")


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_min_variance_two_uncorrelated_assets_analytic(uncorrelated, engine):
    """Regularisation off, sigma 1% / 2%, rho 0: min-variance is 1/sigma^2-proportional, 0.8 / 0.2.

    At daily scale Clarabel used to stop at 0.80018 (its tolerances are absolute): every engine
    solves in normalised units, which this pins to 1e-5 (riskfolio lands 1.3e-6 off; custom: exact KKT polish, 1e-12).
    """
    res = optimise(uncorrelated, "min_variance", engine=engine)
    assert (res.profile_used, res.engine) == ("min_variance", engine)
    assert res.attempts == [Attempt(engine, "min_variance", "success")]
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], rtol=0, atol=1e-12 if engine == "custom" else 1e-5)
    assert_valid_weights(res, ["a", "b"])


def test_equal_weight_without_clusters_is_one_over_n(uncorrelated):
    res = optimise(uncorrelated, "equal_weight")
    assert (res.profile_used, res.engine) == ("equal_weight", "platform")
    np.testing.assert_allclose(res.weights.to_numpy(), [0.5, 0.5], rtol=0, atol=1e-15)


def test_equal_weight_one_cluster_is_inverse_variance(uncorrelated):
    res = optimise(uncorrelated, "equal_weight", clusters=pd.Series({"a": 1, "b": 1}))
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], rtol=0, atol=1e-15)
    assert_valid_weights(res, ["a", "b"])


def test_hierarchical_equal_weight_two_clusters_of_two(uncorrelated):
    r = uncorrelated.assign(c=uncorrelated["a"] * 3.0, d=uncorrelated["b"])
    w = hierarchical_equal_weight(r, pd.Series({"a": 1, "b": 1, "c": 2, "d": 2}))
    # cluster 1: var 1:4 -> 0.8/0.2 of 1/2; cluster 2: var 9:4 -> 4/13, 9/13 of 1/2
    np.testing.assert_allclose(w, [0.4, 0.1, 2 / 13, 4.5 / 13], rtol=0, atol=1e-15)


def test_hierarchical_equal_weight_unknown_cluster_labels_fall_back_to_one_over_n(uncorrelated):
    w = hierarchical_equal_weight(uncorrelated, pd.Series({"a": 1}))  # b has no label
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-15)


@pytest.mark.parametrize(
    "engine, message",
    [
        ("skfolio", "under-performing your risk-free rate"),
        ("custom", "no asset has an expected return above the risk-free rate 0"),
    ],
)
def test_max_sharpe_with_zero_means_falls_back_and_records_why(uncorrelated, engine, message):
    res = optimise(uncorrelated, "max_sharpe", engine=engine)
    assert res.profile_used == "min_variance"
    assert res.fallback_used
    assert [(a.engine, a.profile, a.status) for a in res.attempts] == [
        (engine, "max_sharpe", "failed"),
        (engine, "min_variance", "success"),
    ]
    assert message in res.attempts[0].reason


# --- all-negative expected returns (skfolio max_sharpe) -------------------------------------------


def test_max_sharpe_all_negative_mu_falls_back_to_min_variance(negative_mu):
    assert (negative_mu.mean() < 0).all()
    res = optimise(negative_mu, "max_sharpe", engine="skfolio")
    assert (res.requested, res.profile_used, res.engine) == ("max_sharpe", "min_variance", "skfolio")
    assert res.fallback_used
    first = res.attempts[0]
    assert (first.engine, first.profile, first.status) == ("skfolio", "max_sharpe", "failed")
    assert first.reason.startswith("ValueError: Cannot optimize for Maximum Ratio")
    assert "under-performing your risk-free rate" in first.reason
    assert res.attempts[1] == Attempt("skfolio", "min_variance", "success")
    direct = optimise(negative_mu, "min_variance", engine="skfolio")
    np.testing.assert_allclose(res.weights.to_numpy(), direct.weights.to_numpy(), atol=1e-12)
    assert_valid_weights(res, ["x", "y", "z"])


# --- stub engines: the guarded, recorded fallback chain --------------------------------------------


class Stub(Engine):
    """A test engine given as `weights(profile, X)`: what a plugin author writes first."""

    def run(self, request):
        return EngineOutput(np.asarray(self.weights(request.profile, request.X), dtype=float), {})


class FailingStub(Stub):
    name = "failing_stub"

    def weights(self, profile, returns):
        raise RuntimeError("solver exploded")


class NanStub(Stub):
    name = "nan_stub"

    def weights(self, profile, returns):
        return np.full(returns.shape[1], np.nan)


class ShortSumStub(Stub):
    name = "sum07_stub"

    def weights(self, profile, returns):
        return np.full(returns.shape[1], 0.7 / returns.shape[1])


class NegativeStub(Stub):
    name = "negative_stub"

    def weights(self, profile, returns):
        n = returns.shape[1]
        return np.r_[np.full(n - 1, 1.2 / (n - 1)), -0.2]  # sums to 1, one short


class WrongShapeStub(Stub):
    name = "wrong_shape_stub"

    def weights(self, profile, returns):
        return np.ones(returns.shape[1] + 1) / (returns.shape[1] + 1)


class HrpOnlyStub(Stub):
    name = "hrp_only_stub"

    def weights(self, profile, returns):
        if profile != "hrp":
            raise RuntimeError(f"{profile} unsupported")
        return np.array([0.25, 0.75])


STUBS = [FailingStub(), NanStub(), ShortSumStub(), NegativeStub(), WrongShapeStub(), HrpOnlyStub()]


@pytest.fixture(scope="module", autouse=True)
def stub_engines():
    for stub in STUBS:
        register_engine(stub)
    yield
    for stub in STUBS:
        opt.ENGINES.pop(stub.name, None)


def test_failing_engine_walks_chain_to_equal_weight(uncorrelated):
    res = optimise(uncorrelated, "max_sharpe", engine="failing_stub")
    reason = "RuntimeError: solver exploded"
    assert res.attempts == [
        Attempt("failing_stub", "max_sharpe", "failed", reason),
        Attempt("failing_stub", "min_variance", "failed", reason),
        Attempt("failing_stub", "hrp", "failed", reason),
        Attempt("platform", "equal_weight", "success"),
    ]
    assert (res.requested, res.profile_used, res.engine) == ("max_sharpe", "equal_weight", "platform")
    assert res.fallback_used is True
    assert "solver exploded" in res.chain_text()
    assert res.chain_text() == (
        "failing_stub/max_sharpe:failed (RuntimeError: solver exploded) -> "
        "failing_stub/min_variance:failed (RuntimeError: solver exploded) -> "
        "failing_stub/hrp:failed (RuntimeError: solver exploded) -> platform/equal_weight:success"
    )
    np.testing.assert_allclose(res.weights.to_numpy(), [0.5, 0.5], atol=1e-15)


def test_failing_engine_equal_weight_uses_clusters(uncorrelated):
    res = optimise(uncorrelated, "min_variance", engine="failing_stub", clusters=pd.Series({"a": 7, "b": 7}))
    assert [a.profile for a in res.attempts] == ["min_variance", "hrp", "equal_weight"]
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], atol=1e-15)


@pytest.mark.parametrize(
    "engine, reason",
    [
        ("nan_stub", "ValueError: engine returned non-finite weights"),
        ("sum07_stub", "ValueError: engine weights sum to 0.7, not 1"),
        ("negative_stub", "ValueError: engine returned negative weights (min -0.2)"),
        ("wrong_shape_stub", "ValueError: engine returned (3,) weights for 2 assets"),
    ],
)
def test_bad_engine_answers_rejected_and_recorded(uncorrelated, engine, reason):
    res = optimise(uncorrelated, "min_variance", engine=engine)
    assert res.attempts == [
        Attempt(engine, "min_variance", "failed", reason),
        Attempt(engine, "hrp", "failed", reason),
        Attempt("platform", "equal_weight", "success"),
    ]
    assert (res.profile_used, res.engine, res.fallback_used) == ("equal_weight", "platform", True)
    np.testing.assert_allclose(res.weights.to_numpy(), [0.5, 0.5], atol=1e-15)
    assert_valid_weights(res, ["a", "b"])


def test_chain_stops_at_first_success(uncorrelated):
    res = optimise(uncorrelated, "max_sharpe", engine="hrp_only_stub")
    assert [(a.profile, a.status) for a in res.attempts] == [
        ("max_sharpe", "failed"),
        ("min_variance", "failed"),
        ("hrp", "success"),
    ]
    assert res.attempts[0].reason == "RuntimeError: max_sharpe unsupported"
    assert (res.profile_used, res.engine) == ("hrp", "hrp_only_stub")
    np.testing.assert_allclose(res.weights.to_numpy(), [0.25, 0.75], atol=1e-15)


def test_custom_chain_without_equal_weight_still_ends_deterministically(uncorrelated):
    res = optimise(uncorrelated, "max_sharpe", engine="failing_stub", chain=("max_sharpe",))
    assert res.attempts[-1] == Attempt("platform", "equal_weight", "success", "chain exhausted")
    assert len(res.attempts) == 2
    assert res.profile_used == "equal_weight"
    np.testing.assert_allclose(res.weights.to_numpy(), [0.5, 0.5], atol=1e-15)


def test_unknown_profile_raises(uncorrelated):
    with pytest.raises(ValueError, match="unknown profile 'kelly'"):
        optimise(uncorrelated, "kelly")


# --- input validation ------------------------------------------------------


def test_zero_variance_column_gets_exact_zero_and_is_dropped(uncorrelated):
    r = uncorrelated.assign(flat=0.0)
    res = optimise(r, "hrp")
    assert res.dropped == {"flat": "zero variance"}
    assert res.weights["flat"] == 0.0
    np.testing.assert_allclose(res.weights[["a", "b"]].to_numpy(), [0.8, 0.2], atol=1e-12)
    assert_valid_weights(res, ["a", "b", "flat"])


def test_near_zero_variance_column_dropped_for_min_variance(uncorrelated):
    r = uncorrelated.assign(tiny=1e-10 * np.tile([1.0, -1.0], 126))  # std 1e-10 <= 1e-9
    res = optimise(r, "min_variance")
    assert res.dropped == {"tiny": "zero variance"}
    assert res.weights["tiny"] == 0.0  # pypfopt would have put ~100% here
    assert res.profile_used == "min_variance"
    assert_valid_weights(res, ["a", "b", "tiny"])


def test_duplicated_labels_raise_naming_them(uncorrelated):
    r = pd.concat([uncorrelated, uncorrelated["a"], uncorrelated["b"] * 2], axis=1)
    assert list(r.columns) == ["a", "b", "a", "b"]
    with pytest.raises(ValueError, match=r"duplicated asset labels in returns: \['a', 'b'\]"):
        optimise(r, "hrp")


def test_single_asset_gets_weight_one(uncorrelated):
    res = optimise(uncorrelated[["b"]], "max_sharpe")
    assert res.weights.to_dict() == {"b": 1.0}
    assert (res.profile_used, res.engine, res.fallback_used) == ("max_sharpe", "platform", False)
    assert res.attempts == [Attempt("platform", "max_sharpe", "success", "single asset")]


def test_single_survivor_after_cleaning_gets_weight_one(uncorrelated):
    r = uncorrelated.assign(bad=uncorrelated["a"].where(uncorrelated.index != uncorrelated.index[5]))
    res = optimise(r[["bad", "b"]], "min_variance")
    assert res.dropped == {"bad": "non-finite returns"}
    assert res.weights.to_dict() == {"bad": 0.0, "b": 1.0}


def test_no_columns_gives_profile_none():
    res = optimise(pd.DataFrame(index=pd.bdate_range("2024-01-01", periods=10)), "hrp")
    assert res.profile_used == "none"
    assert res.engine == "platform"
    assert res.weights.empty
    assert res.attempts == [Attempt("platform", "hrp", "failed", "no investable assets")]
    assert res.fallback_used


def test_all_columns_dropped_gives_zero_weights(uncorrelated):
    r = pd.DataFrame({"flat": 0.0, "nan": np.nan}, index=uncorrelated.index)
    res = optimise(r, "min_variance")
    assert res.profile_used == "none"
    assert res.weights.to_dict() == {"flat": 0.0, "nan": 0.0}
    assert res.dropped == {"flat": "zero variance", "nan": "non-finite returns"}
    assert_valid_weights(res, ["flat", "nan"])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("profile", PROFILES)
def test_non_finite_column_is_dropped_never_propagates(uncorrelated, bad_value, profile):
    bad = uncorrelated["a"] * 1.5
    bad.iloc[17] = bad_value
    r = uncorrelated.assign(bad=bad)
    res = optimise(r, profile)
    assert res.dropped == {"bad": "non-finite returns"}
    assert res.weights["bad"] == 0.0
    assert_valid_weights(res, ["a", "b", "bad"])
    assert res.profile_used in ("min_variance", "hrp", "equal_weight")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_result_valid_on_real_data(sp500, profile):
    res = optimise(sp500, profile)
    assert res.profile_used == profile  # real data: no fallback needed
    assert not res.fallback_used
    assert_valid_weights(res, list(sp500.columns))
    assert res.attempts[-1].status == "success"


# --- bounded simplex projection -----------------------------------------------------------------


@pytest.mark.parametrize(
    "w, lower, upper, expected",
    [
        ([0.9, 0.1], 0.05, 0.5, [0.5, 0.5]),
        ([0.98, 0.01, 0.01], 0.05, 0.5, [0.5, 0.25, 0.25]),
        ([0.97, 0.03], 0.05, 0.95, [0.95, 0.05]),
        ([0.2, 0.3, 0.5], 0.0, 1.0, [0.2, 0.3, 0.5]),  # already feasible: unchanged
        ([2.0, 6.0], 0.0, 1.0, [0.25, 0.75]),  # normalised first
        ([0.0, 0.0, 0.0, 0.0], 0.1, 0.4, [0.25, 0.25, 0.25, 0.25]),  # zero vector -> 1/n
    ],
)
def test_project_bounded_simplex_golden(w, lower, upper, expected):
    out = project_bounded_simplex(np.array(w), lower, upper)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert out.sum() == pytest.approx(1.0, abs=1e-12)


def test_project_bounded_simplex_random_vectors_respect_bounds():
    rng = np.random.default_rng(11)
    for _ in range(50):
        w = rng.dirichlet(np.full(6, 0.3))
        out = project_bounded_simplex(w, 0.05, 0.3)
        assert out.sum() == pytest.approx(1.0, abs=1e-12)
        assert out.min() >= 0.05 - 1e-12 and out.max() <= 0.3 + 1e-12


@pytest.mark.parametrize("n, lower, upper", [(3, 0.4, 0.6), (3, 0.0, 0.3), (2, 0.6, 0.4)])
def test_project_bounded_simplex_infeasible_raises(n, lower, upper):
    with pytest.raises(ValueError, match="infeasible bounds"):
        project_bounded_simplex(np.full(n, 1.0 / n), lower, upper)


def test_project_bounded_simplex_empty():
    assert project_bounded_simplex(np.array([]), 0.1, 0.5).shape == (0,)


# --- cross-library agreement --------------------------------------------------------------------------


def test_min_variance_agrees_with_pypfopt_on_sp500(sp500):
    from pypfopt import EfficientFrontier

    assert sp500.shape == (500, 6)
    ours = optimise(sp500, "min_variance")
    assert ours.profile_used == "min_variance"
    S = sp500.cov()
    # The annualised sample covariance has the same minimiser; at daily scale (S ~ 1e-4) Clarabel's
    # default tolerances leave PyPortfolioOpt itself ~1.1e-4 from the optimum, which would test the
    # reference's solver tolerance instead of our weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ef = EfficientFrontier(sp500.mean() * 252, S * 252, weight_bounds=(0, 1), solver="CLARABEL")
        ref = pd.Series(ef.min_volatility()).reindex(sp500.columns)
    np.testing.assert_allclose(ours.weights.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-4)
    var_ours = ours.weights.to_numpy() @ S.to_numpy() @ ours.weights.to_numpy()
    var_ref = ref.to_numpy() @ S.to_numpy() @ ref.to_numpy()
    assert var_ours == pytest.approx(var_ref, rel=1e-7)
    assert ours.weights.idxmax() == "CVX"
    assert ours.weights["CVX"] == pytest.approx(0.6211, abs=1e-3)


def test_unknown_engine_is_an_error_not_a_silent_fallback(uncorrelated):
    with pytest.raises(ValueError, match="unknown engine 'typo'; registered: .*skfolio"):
        optimise(uncorrelated, "min_variance", engine="typo")


# ---- options that need a solver: condition ladder, market neutral, cluster caps as constraints ----


def _factor_returns(n_assets: int, betas, T: int = 500, noise: float = 0.01, seed: int = 7) -> tuple:
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0004, 0.01, T)
    X = market[:, None] * np.asarray(betas)[None, :] + rng.normal(0.0003, noise, (T, n_assets))
    return X, market


def test_an_ill_conditioned_correlation_gets_more_shrinkage_until_it_is_not():
    from quant_assets.allocation.engines.base import SHRINKAGE_LADDER, condition_number

    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.01, (400, 3))
    X = np.column_stack([base, base[:, 0] + rng.normal(0, 1e-5, 400)])  # a near-copy of column 0
    assert condition_number(np.cov(X, rowvar=False)) > 1e5
    cfg = RiskConfig(condition_number_max=1000)
    result = optimise_array(X, ["a", "b", "c", "a2"], "min_variance", config=cfg)
    p = result.provenance
    assert p["shrinkage"] in SHRINKAGE_LADDER and p["shrinkage"] > 0
    assert p["diagnostics"]["condition_number"] <= 1000
    smaller = [s for s in SHRINKAGE_LADDER if s < p["shrinkage"]]
    if smaller:  # the ladder stopped at the first rung that works
        sd = np.sqrt(np.diag(np.cov(X, rowvar=False)))
        corr = np.cov(X, rowvar=False) / np.outer(sd, sd)
        assert condition_number((1 - smaller[-1]) * corr + smaller[-1] * np.eye(4)) > 1000
    unchanged = optimise_array(X[:, :3], ["a", "b", "c"], "min_variance", config=cfg)
    assert unchanged.provenance["shrinkage"] == 0.0  # well conditioned: left alone


def test_market_neutral_bounds_the_portfolio_beta():
    betas = [1.6, 1.3, 0.9, 0.2, -0.4]
    X, market = _factor_returns(5, betas)
    free = optimise_array(X, list("abcde"), "min_variance")
    neutral = optimise_array(X, list("abcde"), "min_variance", config=RiskConfig(market_neutral=True), benchmark=market)
    beta_hat = ((X - X.mean(0)).T @ (market - market.mean()) / (len(market) - 1)) / market.var(ddof=1)
    assert abs(free.values @ beta_hat) > 0.15  # unconstrained it carries market exposure
    assert abs(neutral.values @ beta_hat) <= 0.15 + 1e-6  # the bound for fewer than 15 assets
    assert neutral.values.sum() == pytest.approx(1.0) and (neutral.values >= 0).all()
    assert neutral.provenance["diagnostics"]["beta_bound"] == 0.15
    sharpe = optimise_array(
        X, list("abcde"), "max_sharpe", config=RiskConfig(market_neutral=True, beta_bound=0.05), benchmark=market
    )
    assert sharpe.profile_used == "max_sharpe" and abs(sharpe.values @ beta_hat) <= 0.05 + 1e-6
    # no benchmark given: the profile fails and the chain records why
    blind = optimise_array(X, list("abcde"), "min_variance", config=RiskConfig(market_neutral=True))
    assert blind.profile_used != "min_variance" and "benchmark" in blind.chain_text()


def test_cluster_caps_are_constraints_for_convex_profiles_not_a_projection():
    """The projection of the unconstrained min-variance portfolio onto the caps is feasible but
    not optimal: the constrained optimum (checked against scipy's SLSQP) has less volatility."""
    from scipy.optimize import minimize

    from quant_assets.allocation.engines.base import cap_cluster_weights

    rng = np.random.default_rng(25)
    T = 600
    f1, f2 = rng.normal(0, 0.005, T), rng.normal(0, 0.01, T)
    X = np.column_stack(
        [f1 + rng.normal(0, s, T) for s in (0.002, 0.003, 0.004)]
        + [f2 + rng.normal(0, s, T) for s in (0.004, 0.006)]
        + [rng.normal(0, s, T) for s in (0.009, 0.011, 0.014)]
    )
    labels = np.array([1, 1, 1, 2, 2, 3, 4, 5])
    cfg = RiskConfig(cluster_caps_enabled=True)
    capped = optimise_array(X, list("abcdefgh"), "min_variance", clusters=labels, config=cfg)
    free = optimise_array(X, list("abcdefgh"), "min_variance", clusters=labels)
    projected, eff = cap_cluster_weights(free.values, labels, 0.25)
    cov = np.cov(X, rowvar=False)

    def vol(w):
        return float(np.sqrt(w @ cov @ w))

    assert capped.provenance["cluster_cap_method"] == "constraint" and capped.provenance["cluster_cap"] == eff == 0.25
    assert np.bincount(labels, weights=capped.values)[1:].max() <= eff + 1e-7
    assert vol(projected) / vol(capped.values) - 1 == pytest.approx(0.0111, abs=5e-4)  # 1.1 % more volatile
    members = [labels == k for k in range(1, 6)]
    reference = minimize(
        lambda w: w @ cov @ w * 1e4,
        np.full(8, 1 / 8),
        method="SLSQP",
        bounds=[(0, 1)] * 8,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}]
        + [{"type": "ineq", "fun": lambda w, m=m: eff - w[m].sum()} for m in members],
        options={"ftol": 1e-15, "maxiter": 500},
    )
    assert vol(capped.values) == pytest.approx(vol(reference.x), rel=1e-6)
    hrp = optimise_array(X, list("abcdefgh"), "hrp", clusters=labels, config=cfg)
    assert hrp.provenance["cluster_cap_method"] == "projection"  # no solver: projected, and said so
