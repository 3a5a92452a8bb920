"""quant_assets.allocation.engines via optimise: golden values per profile, analytic cases, cross-engine
agreement (HRP to 1e-12 on skfolio's S&P 500 data), barbell and cluster-cap numbers, pathological
inputs per engine and provenance."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_assets.allocation.engines.base import cap_cluster_weights, capped_simplex
from quant_assets.allocation.engines.hrp import hrp_weights
from quant_assets.allocation.optimise import ENGINES, FALLBACK_CHAINS, PROFILES, RiskConfig, optimise

ENGINE_NAMES = ["custom", "skfolio", "riskfolio", "pyportfolioopt"]
PLAIN = RiskConfig(hrp_leaf_order="plain")


def valid(res, columns) -> None:
    w = res.weights
    assert list(w.index) == list(columns)
    assert np.isfinite(w.to_numpy()).all() and (w.to_numpy() >= 0).all()
    assert abs(w.sum() - 1.0) <= 1e-9


def cfg_for(engine: str) -> RiskConfig | None:
    return PLAIN if engine == "pyportfolioopt" else None


# --- data -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    """5 correlated assets, 300 rows, fixed seed: the golden-value input."""
    rng = np.random.default_rng(20240601)
    A = rng.normal(0, 1, (5, 5))
    L = np.linalg.cholesky(A @ A.T / 5 + np.eye(5) * 0.5)
    X = 0.01 * rng.normal(0, 1, (300, 5)) @ L.T + np.array([0.0008, 0.0003, -0.0002, 0.0005, 0.0001])
    return pd.DataFrame(X, columns=list("ABCDE"))


CLUSTERS = pd.Series({"A": 0, "B": 0, "C": 1, "D": 2, "E": 2})
SCORES = pd.Series({"A": 0.3, "B": 0.9, "C": 0.1, "D": 0.5, "E": 0.7})


@pytest.fixture(scope="module")
def uncorrelated() -> pd.DataFrame:
    a = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], 63)
    b = 0.02 * np.tile([1.0, 1.0, -1.0, -1.0], 63)
    return pd.DataFrame({"a": a, "b": b})


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from skfolio.datasets import load_sp500_dataset
    from skfolio.preprocessing import prices_to_returns

    return prices_to_returns(load_sp500_dataset())


# --- golden values (fixed seed, recorded to 1e-8) --------------------------------------------------

GOLDEN = {
    "market": [0.2] * 5,
    "benchmark": [0.2] * 5,
    "raw_pool_ew": [0.2] * 5,
    "equal_weight": [0.226737247377, 0.106596085956, 0.333333333333, 0.113660277149, 0.219673056185],
    "min_variance": [0.246390262055, 0.198684880373, 0.043089237116, 0.222685693348, 0.289149927108],
    "hrp": [0.255537401309, 0.120135915515, 0.245683075355, 0.129110212217, 0.249533395605],
    "max_sharpe": [0.355401802661, 0.284957898391, 0.0, 0.183052162303, 0.176588136645],
    "risk_parity": [0.205328295921, 0.196927413679, 0.146488221358, 0.203773221071, 0.247482847971],
    # 3 clusters -> 1 aggressor cluster: leader B (score 0.9) gets NORMAL's 0.10; A, C, D, E = 0.9 x HRP
    "barbell": [0.226715084155, 0.1, 0.220088347555, 0.154531342664, 0.298665225626],
}


@pytest.mark.parametrize("profile", PROFILES)
def test_golden_values_per_profile(small, profile):
    res = optimise(small, profile, clusters=CLUSTERS, antifragility=SCORES)
    assert (res.profile_used, res.fallback_used) == (profile, False)
    np.testing.assert_allclose(res.weights.to_numpy(), GOLDEN[profile], rtol=0, atol=1e-8)
    valid(res, small.columns)


def test_golden_hybrid_equal_weight(small):
    """0.5 inverse variance + 0.5 momentum rank inside clusters; momentum defaults to the window return."""
    res = optimise(small, "equal_weight", clusters=CLUSTERS, config=RiskConfig(hybrid_intra_weighting=True))
    np.testing.assert_allclose(
        res.weights.to_numpy(), [0.168924179244, 0.164409154089, 1 / 3, 0.112385694130, 0.220947639204], atol=1e-8
    )
    # cluster {A, B}: inverse variance 0.6802/0.3198, momentum B > A -> ranks 1/3, 2/3
    var = small[["A", "B"]].var().to_numpy()
    ivp_a = (1 / var[0]) / (1 / var).sum()
    assert res.weights["A"] == pytest.approx((0.5 * ivp_a + 0.5 / 3) / 3, abs=1e-12)
    explicit = optimise(
        small,
        "equal_weight",
        clusters=CLUSTERS,
        config=RiskConfig(hybrid_intra_weighting=True),
        momentum=pd.Series({"A": 2.0, "B": 1.0, "C": 0.0, "D": 0.0, "E": 5.0}),
    )
    assert explicit.weights["A"] == pytest.approx((0.5 * ivp_a + 0.5 * 2 / 3) / 3, abs=1e-12)


def test_cvar_penalty_moves_weight_away_from_fat_tails(small):
    base = optimise(small, "min_variance").weights
    pen = optimise(small, "min_variance", config=RiskConfig(cvar_penalty=1.0))
    np.testing.assert_allclose(
        pen.weights.to_numpy(),
        [0.297163042457, 0.089561693955, 0.190572403450, 0.110293877215, 0.312408982922],
        atol=1e-8,
    )
    cvar = small.apply(lambda s: -np.sort(s.to_numpy())[:15].mean())
    worst = cvar.idxmax()
    assert pen.weights[worst] < base[worst]
    assert pen.provenance["cvar_penalty"] == 1.0
    # a library engine refuses the option instead of ignoring it; the chain records it
    lib = optimise(small, "min_variance", engine="skfolio", config=RiskConfig(cvar_penalty=1.0))
    assert "CVaR penalty is custom-engine only" in lib.attempts[0].reason


# --- analytic cases, regularisation off ---------------------------------------


@pytest.mark.parametrize("engine", ["custom", "skfolio", "riskfolio"])
def test_risk_parity_two_uncorrelated_is_inverse_vol(uncorrelated, engine):
    res = optimise(uncorrelated, "risk_parity", engine=engine)
    assert (res.profile_used, res.engine) == ("risk_parity", engine)
    np.testing.assert_allclose(res.weights.to_numpy(), [2 / 3, 1 / 3], atol=1e-12 if engine == "custom" else 1e-5)


def test_pyportfolioopt_has_no_risk_parity_and_says_so(uncorrelated):
    res = optimise(uncorrelated, "risk_parity", engine="pyportfolioopt", config=PLAIN)
    assert res.attempts[0].reason == ("UnsupportedProfile: pyportfolioopt engine has no profile 'risk_parity'")
    assert (res.profile_used, res.engine) == ("hrp", "pyportfolioopt")
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], atol=1e-12)


def test_pyportfolioopt_refuses_optimal_leaf_order(uncorrelated):
    res = optimise(uncorrelated, "hrp", engine="pyportfolioopt")
    assert "plain leaf ordering only" in res.attempts[0].reason
    assert res.profile_used == "min_variance"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_max_sharpe_two_uncorrelated_positive_means(engine):
    """mu 0.1%/0.1%, sigma 1%/2%, rho 0: tangency w ~ mu/sigma^2 -> 0.8/0.2."""
    a = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], 63) + 0.001
    b = 0.02 * np.tile([1.0, 1.0, -1.0, -1.0], 63) + 0.001
    res = optimise(pd.DataFrame({"a": a, "b": b}), "max_sharpe", engine=engine)
    assert res.profile_used == "max_sharpe"
    np.testing.assert_allclose(res.weights.to_numpy(), [0.8, 0.2], atol=1e-12 if engine == "custom" else 1e-4)


# --- cross-engine agreement on real data -----------------------------------------------------------


@pytest.mark.parametrize("linkage", ["ward", "single", "average", "complete"])
@pytest.mark.parametrize("order", ["optimal", "plain"])
def test_hrp_variants_agree_across_engines_to_1e12(sp500, linkage, order):
    cfg = RiskConfig(hrp_linkage=linkage, hrp_leaf_order=order)
    ours = optimise(sp500, "hrp", engine="custom", config=cfg)
    assert ours.provenance["variant"] == f"{linkage}/pearson/{order}"
    engines = ["skfolio", "riskfolio"] + (["pyportfolioopt"] if order == "plain" else [])
    for engine in engines:
        other = optimise(sp500, "hrp", engine=engine, config=cfg)
        assert (other.profile_used, other.engine) == ("hrp", engine)
        np.testing.assert_allclose(
            ours.weights.to_numpy(), other.weights.to_numpy(), rtol=0, atol=1e-12, err_msg=f"{engine} {linkage}/{order}"
        )


def test_default_variant_equals_skfolio_default_hrp(sp500):
    from skfolio.optimization import HierarchicalRiskParity

    ref = HierarchicalRiskParity().fit(sp500.to_numpy()).weights_
    np.testing.assert_allclose(optimise(sp500, "hrp").weights.to_numpy(), ref, rtol=0, atol=1e-12)
    assert hrp_weights(sp500.cov().to_numpy()).shape == (20,)


@pytest.mark.parametrize("profile, atol", [("min_variance", 1e-5), ("max_sharpe", 1e-4), ("risk_parity", 1e-5)])
def test_convex_profiles_agree_across_engines(sp500, profile, atol):
    window = sp500.iloc[-1000:]
    ours = optimise(window, profile)
    assert ours.profile_used == profile
    for engine in ENGINE_NAMES[1:]:
        if profile == "risk_parity" and engine == "pyportfolioopt":
            continue
        other = optimise(window, profile, engine=engine)
        assert other.profile_used == profile, other.chain_text()
        np.testing.assert_allclose(ours.weights.to_numpy(), other.weights.to_numpy(), rtol=0, atol=atol, err_msg=engine)


def test_walk_forward_folds_match_skfolio_cross_val_predict(sp500):
    from skfolio.model_selection import WalkForward, cross_val_predict
    from skfolio.optimization import HierarchicalRiskParity

    X = sp500.iloc[: 252 + 10 * 5]
    pred = cross_val_predict(HierarchicalRiskParity(), X, cv=WalkForward(train_size=252, test_size=10))
    folds = list(WalkForward(train_size=252, test_size=10).split(X))
    for (train, _), portfolio in zip(folds, pred.portfolios):
        w = optimise(X.iloc[train], "hrp", engine="custom").weights.to_numpy()
        np.testing.assert_allclose(w, portfolio.weights, rtol=0, atol=1e-12)


# --- barbell ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six(small) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(rng.normal(0.0, [0.01, 0.012, 0.014, 0.016, 0.018, 0.02], (250, 6)), columns=list("abcdef"))


@pytest.mark.parametrize(
    "regime, share", [("QUIET", 0.05), ("NORMAL", 0.1 / 3), ("TURBULENT", 0.05 / 3), ("CRISIS", 0.01)]
)
def test_barbell_aggressor_shares_per_regime(six, regime, share):
    """6 assets in 6 clusters: k = min(5, 6 // 2, 5) = 3 aggressors sharing the regime's total."""
    scores = pd.Series([0.1, 0.9, 0.5, 0.8, 0.2, 0.7], index=six.columns)
    res = optimise(six, "barbell", regime=regime, clusters=pd.Series(range(6), index=six.columns), antifragility=scores)
    assert res.profile_used == "barbell"
    aggressors = ["b", "d", "f"]
    np.testing.assert_allclose(res.weights[aggressors].to_numpy(), share, rtol=0, atol=1e-15)
    core = res.weights.drop(aggressors)
    hrp_core = optimise(six[core.index], "hrp").weights
    np.testing.assert_allclose(core.to_numpy(), (1 - 3 * share) * hrp_core.to_numpy(), atol=1e-15)
    assert res.provenance["diagnostics"]["aggressors"] == aggressors
    valid(res, six.columns)


def test_barbell_aggressor_total_is_configurable(six):
    cfg = RiskConfig(
        aggressor_weights={"QUIET": 0.3, "NORMAL": 0.2, "TURBULENT": 0.1, "CRISIS": 0.0}, max_aggressor_clusters=2
    )
    res = optimise(six, "barbell", config=cfg, antifragility=pd.Series(range(6), index=six.columns))
    assert res.weights[["e", "f"]].tolist() == pytest.approx([0.1, 0.1], abs=1e-15)  # 2 leaders x 0.2 / 2


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_barbell_with_one_cluster_falls_back_to_hrp_with_reason(six, engine):
    res = optimise(
        six,
        "barbell",
        engine=engine,
        clusters=pd.Series(0, index=six.columns),
        antifragility=pd.Series(1.0, index=six.columns),
        config=cfg_for(engine),
    )
    assert (res.profile_used, res.fallback_used) == ("hrp", True)
    assert res.attempts[0].reason == (
        "ValueError: barbell needs at least 2 clusters, got 1: no aggressor sleeve possible"
    )
    valid(res, six.columns)


def test_barbell_without_scores_falls_back_to_hrp(six):
    res = optimise(six, "barbell")
    assert res.profile_used == "hrp"
    assert res.attempts[0].reason == "ValueError: barbell needs antifragility scores (none given)"


@pytest.mark.parametrize("engine", ["skfolio", "riskfolio"])
def test_barbell_library_engines_match_custom(six, engine):
    scores = pd.Series([0.1, 0.9, 0.5, 0.8, 0.2, 0.7], index=six.columns)
    ours = optimise(six, "barbell", antifragility=scores).weights
    other = optimise(six, "barbell", engine=engine, antifragility=scores)
    assert other.profile_used == "barbell"
    np.testing.assert_allclose(other.weights.to_numpy(), ours.to_numpy(), atol=1e-12)


# --- cluster caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "totals, cap, expected",
    [
        ([0.7, 0.2, 0.1], 0.25, [1 / 3] * 3),  # effective cap max(0.25, 1/3)
        ([0.5, 0.3, 0.1, 0.1], 0.25, [0.25] * 4),
        # Euclidean projection: the 0.05 excess is shared equally (not pro rata) by the uncapped clusters
        ([0.4, 0.3, 0.2, 0.1], 0.35, [0.35, 0.3 + 0.05 / 3, 0.2 + 0.05 / 3, 0.1 + 0.05 / 3]),
        ([0.2, 0.2, 0.2, 0.2, 0.2], 0.25, [0.2] * 5),  # already feasible: unchanged
    ],
)
def test_cluster_cap_examples(totals, cap, expected):
    w = np.array(totals)
    out, eff = cap_cluster_weights(w, np.arange(len(w)), cap)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert eff == max(cap, 1 / len(w))
    assert out.sum() == pytest.approx(1.0, abs=1e-15)


def test_cluster_cap_keeps_members_relative_weights():
    w = np.array([0.6, 0.1, 0.2, 0.1])  # cluster 0 = {0, 1} holds 0.7
    out, eff = cap_cluster_weights(w, np.array([0, 0, 1, 2]), 0.25)
    assert eff == pytest.approx(1 / 3)
    np.testing.assert_allclose(out, [1 / 3 * 6 / 7, 1 / 3 / 7, 1 / 3, 1 / 3], atol=1e-12)
    assert capped_simplex(np.array([1.0, 0.0]), 0.5).tolist() == [0.5, 0.5]


@pytest.mark.parametrize("regime, cap", [("QUIET", 0.25), ("NORMAL", 0.25), ("TURBULENT", 0.20), ("CRISIS", 0.15)])
def test_cluster_caps_by_regime_in_optimise(sp500, regime, cap):
    window = sp500.iloc[-500:]
    clusters = pd.Series(np.arange(20) % 7, index=window.columns)  # 7 clusters: 1/7 = 0.143
    res = optimise(
        window, "min_variance", clusters=clusters, regime=regime, config=RiskConfig(cluster_caps_enabled=True)
    )
    totals = res.weights.groupby(clusters).sum()
    assert totals.max() <= max(cap, 1 / 7) + 1e-12
    assert res.provenance["cluster_cap"] == max(cap, 1 / 7)
    valid(res, window.columns)


# --- pathological inputs, per engine ---------------------------------------------------------------


@pytest.fixture(scope="module")
def negative_mu() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.01, (252, 4))
    return pd.DataFrame(x - x.mean(axis=0) + np.array([-0.002, -0.001, -0.003, -0.0005]), columns=list("wxyz"))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_all_negative_mu_max_sharpe_falls_back_per_engine(negative_mu, engine):
    res = optimise(negative_mu, "max_sharpe", engine=engine)
    assert [(a.profile, a.status) for a in res.attempts] == [("max_sharpe", "failed"), ("min_variance", "success")]
    assert res.attempts[0].reason  # the library's or our own reason, never empty
    direct = optimise(negative_mu, "min_variance", engine="custom").weights
    np.testing.assert_allclose(res.weights.to_numpy(), direct.to_numpy(), atol=1e-5)
    valid(res, negative_mu.columns)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("profile", ["min_variance", "hrp", "max_sharpe", "risk_parity"])
def test_n_greater_than_t_per_engine(sp500, engine, profile):
    window = sp500.iloc[-15:]  # 15 rows, 20 assets: singular covariance
    res = optimise(window, profile, engine=engine, config=cfg_for(engine))
    valid(res, window.columns)
    assert res.attempts[-1].status == "success"
    if engine == "custom" and profile in ("min_variance", "hrp"):
        assert not res.fallback_used


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("profile", ["min_variance", "hrp", "max_sharpe", "risk_parity", "barbell"])
def test_constant_price_asset_gets_zero_per_engine(small, engine, profile):
    r = small.assign(flat=0.0)
    res = optimise(r, profile, engine=engine, config=cfg_for(engine), antifragility=SCORES)
    assert res.dropped == {"flat": "zero variance"}
    assert res.weights["flat"] == 0.0
    valid(res, r.columns)


def test_constant_asset_kept_in_plain_equal_weight_profiles(small):
    r = small.assign(cash=0.0)
    for profile in ("market", "benchmark", "raw_pool_ew"):
        res = optimise(r, profile)
        assert res.weights.tolist() == pytest.approx([1 / 6] * 6, abs=1e-15) and res.dropped == {}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_duplicated_columns_raise_per_engine(small, engine):
    r = pd.concat([small, small["A"]], axis=1)
    with pytest.raises(ValueError, match=r"duplicated asset labels in returns: \['A'\]"):
        optimise(r, "hrp", engine=engine)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_identical_data_under_distinct_names_per_engine(small, engine):
    """rho = 1 pair: distance 0, covariance singular; must still be valid (or fall back, recorded)."""
    r = small.assign(A2=small["A"])
    for profile in ("hrp", "min_variance", "risk_parity"):
        res = optimise(r, profile, engine=engine, config=cfg_for(engine))
        valid(res, r.columns)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("profile", ["min_variance", "hrp", "max_sharpe", "risk_parity"])
def test_non_finite_returns_per_engine(small, engine, bad, profile):
    r = small.copy()
    r.iloc[10, 2] = bad
    res = optimise(r, profile, engine=engine, config=cfg_for(engine))
    assert res.dropped == {"C": "non-finite returns"} and res.weights["C"] == 0.0
    valid(res, r.columns)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("profile", ["min_variance", "hrp", "max_sharpe", "risk_parity", "barbell"])
def test_two_assets_per_engine(small, engine, profile):
    r = small[["A", "B"]]
    res = optimise(
        r, profile, engine=engine, config=cfg_for(engine), antifragility=SCORES, clusters=pd.Series({"A": 0, "B": 1})
    )
    valid(res, r.columns)
    if profile in ("hrp", "min_variance") or (engine != "pyportfolioopt" and profile == "risk_parity"):
        assert res.profile_used == profile
    if profile == "barbell":  # 2 clusters -> 1 aggressor (B, score 0.9) with 0.10, core A
        assert res.weights.tolist() == pytest.approx([0.9, 0.1], abs=1e-15)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_one_asset_per_engine(small, engine):
    res = optimise(small[["A"]], "max_sharpe", engine=engine)
    assert res.weights.tolist() == [1.0] and res.engine == "platform"


@pytest.mark.parametrize("engine", ["riskfolio", "pyportfolioopt"])
def test_library_nan_weights_are_caught(small, engine, monkeypatch):
    """riskfolio and pypfopt return NaN weights silently: the guard rejects them and the chain moves on."""
    from quant_assets.allocation.engines.base import EngineOutput

    monkeypatch.setattr(type(ENGINES[engine]), "run", lambda self, req: EngineOutput(np.full(req.n, np.nan)))
    res = optimise(small, "min_variance", engine=engine)
    assert res.attempts[0].reason == "ValueError: engine returned non-finite weights"
    assert (res.profile_used, res.engine) == ("equal_weight", "platform")
    valid(res, small.columns)


# --- interface and provenance --------------------------------------------------------------------------


def test_provenance_records_how_weights_were_produced(negative_mu):
    res = optimise(negative_mu, "max_sharpe", engine="custom", regime="CRISIS")
    p = res.provenance
    assert p["engine"] == "custom" and p["profile_requested"] == "max_sharpe" and p["profile_used"] == "min_variance"
    assert p["solver"] == "CLARABEL+kkt-polish" and p["covariance"] == "sample" and p["shrinkage"] == 0.0
    assert p["regime"] == "CRISIS" and p["hrp_variant"] == "ward/pearson/optimal"
    assert [a["status"] for a in p["fallback_chain"]] == ["failed", "success"]
    assert "risk-free rate" in p["fallback_chain"][0]["reason"]
    import json

    json.dumps(p)


def test_risk_config_is_frozen_strict_and_hashable():
    cfg = RiskConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.hrp_linkage = "single"
    with pytest.raises(Exception, match="extra"):
        RiskConfig(linkage="ward")
    with pytest.raises(ValidationError, match="hrp_linkage"):
        RiskConfig(hrp_linkage="centroid")
    assert hash(cfg) == hash(RiskConfig())
    assert cfg.cluster_caps.NORMAL == 0.25 and cfg.aggressor_weights.CRISIS == 0.03


def test_unknown_regime_is_an_error(small):
    with pytest.raises(ValueError, match="unknown regime 'BULL'"):
        optimise(small, "hrp", regime="BULL")


@pytest.mark.parametrize("estimator, shrinkage", [("ledoit_wolf", 0.0), ("sample", 0.3)])
def test_covariance_options_change_weights_and_are_recorded(small, estimator, shrinkage):
    cfg = RiskConfig(covariance=estimator, shrinkage=shrinkage)
    base = optimise(small, "min_variance").weights
    res = optimise(small, "min_variance", config=cfg)
    assert res.provenance["covariance"] == estimator and res.provenance["shrinkage"] == shrinkage
    assert np.abs(res.weights - base).max() > 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = optimise(small, "min_variance", engine="pyportfolioopt", config=cfg)
    np.testing.assert_allclose(lib.weights.to_numpy(), res.weights.to_numpy(), atol=1e-5)


def test_every_profile_has_a_chain_ending_in_a_platform_profile():
    for profile, chain in FALLBACK_CHAINS.items():
        assert chain[0] == profile
        assert chain[-1] in ("equal_weight", "market", "benchmark", "raw_pool_ew")


def test_manifest_names_are_known_to_optimise():
    from quant_assets.config import manifest

    assert manifest.ENGINE_REGISTRY is ENGINES  # the manifest validates against the live registry
    assert set(manifest.RISK_PROFILES) == set(PROFILES)
    assert set(manifest.DEFAULT_SLEEVE_PROFILES) <= set(PROFILES)
    assert set(manifest.ALLOCATION_PROFILES) <= set(PROFILES)


# ---- the López de Prado (2016) HRP variant -------------------------------------------------------


def _lopez_de_prado_data() -> np.ndarray:
    """The paper's numerical example: 5 N(0, 1) series and 5 noisy copies (sigma 0.25) of randomly
    chosen ones, 10,000 observations, seeds 12345 (numpy and Python's random: under Python 3 the
    copies are of columns [3, 0, 2, 2, 1], not the paper's Python 2 draw)."""
    import random

    np.random.seed(12345)
    random.seed(12345)
    x = np.random.normal(0, 1, size=(10000, 5))
    cols = [random.randint(0, 4) for _ in range(5)]
    return np.append(x, x[:, cols] + np.random.normal(0, 0.25, size=(10000, 5)), axis=1)


def _published_procedure(cov: np.ndarray) -> np.ndarray:
    """The 2016 paper's procedure, step by step with scipy: the *square* distance matrix handed to
    `linkage` (which reads its rows as observations), the tree's leaf order, recursive bisection on
    inverse-variance cluster variances."""
    import scipy.cluster.hierarchy as sch

    sd = np.sqrt(np.diag(cov))
    square = np.sqrt(np.clip((1 - cov / np.outer(sd, sd)) / 2, 0, 1))
    order = list(sch.leaves_list(sch.linkage(square, "single")))
    w = np.ones(len(cov))
    clusters = [order]
    while clusters:
        clusters = [c[i:j] for c in clusters for i, j in ((0, len(c) // 2), (len(c) // 2, len(c))) if len(c) > 1]
        for left, right in zip(clusters[0::2], clusters[1::2]):
            risk = []
            for part in (left, right):
                ivp = 1 / np.diag(cov)[part]
                ivp /= ivp.sum()
                risk.append(ivp @ cov[np.ix_(part, part)] @ ivp)
            alpha = 1 - risk[0] / (risk[0] + risk[1])
            w[left] *= alpha
            w[right] *= 1 - alpha
    return w


def test_lopez_de_prado_2016_variant_is_the_published_procedure():
    from quant_assets.allocation.optimise import LOPEZ_DE_PRADO_2016, RiskConfig

    cov = np.cov(_lopez_de_prado_data(), rowvar=False)
    cfg = RiskConfig(**LOPEZ_DE_PRADO_2016)
    assert cfg.hrp_variant == "lopez_de_prado_2016"
    ours = optimise(pd.DataFrame(_lopez_de_prado_data()), "hrp", engine="custom", config=cfg)
    np.testing.assert_allclose(ours.values, _published_procedure(cov), rtol=0, atol=1e-15)
    assert ours.provenance["variant"] == "lopez_de_prado_2016"
    # golden values of both variants on this data: clustering rows of the distance matrix moves
    # weights by up to 6.6 percentage points against the corrected (condensed-distance) variant
    rows = [0.109945, 0.067596, 0.075961, 0.097549, 0.193357, 0.091662, 0.103968, 0.071408, 0.125317, 0.063236]
    corrected = [0.136743, 0.133492, 0.062142, 0.061208, 0.136038, 0.057515, 0.115731, 0.058417, 0.125574, 0.113141]
    np.testing.assert_allclose(ours.values, rows, atol=5e-7)
    plain = optimise(
        pd.DataFrame(_lopez_de_prado_data()),
        "hrp",
        engine="custom",
        config=RiskConfig(hrp_linkage="single", hrp_leaf_order="plain"),
    )
    np.testing.assert_allclose(plain.values, corrected, atol=5e-7)
    assert np.abs(plain.values - ours.values).max() == pytest.approx(0.0659, abs=1e-4)


def test_the_corrected_variant_agrees_with_skfolio_and_other_engines_refuse_the_published_one():
    from quant_assets.allocation.optimise import LOPEZ_DE_PRADO_2016, RiskConfig

    X = pd.DataFrame(_lopez_de_prado_data()[:2000])
    corrected = RiskConfig(hrp_linkage="single", hrp_leaf_order="plain")
    ours = optimise(X, "hrp", engine="custom", config=corrected)
    theirs = optimise(X, "hrp", engine="skfolio", config=corrected)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-12)
    published = optimise(X, "hrp", engine="skfolio", config=RiskConfig(**LOPEZ_DE_PRADO_2016))
    assert published.profile_used != "hrp" and "custom-engine only" in published.chain_text()
