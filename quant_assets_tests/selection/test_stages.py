"""Funnel building blocks: clustering, probability maps and rankers, policy filters
and synthesis ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_assets.selection.clustering import (
    ClusteringSettings,
    cluster,
    correlation_clusters,
    correlation_distance,
    cut,
    threshold_sensitivity,
)
from quant_assets.selection.filters import (
    FILTERS,
    VETO_COLUMNS,
    DarwinianFilter,
    DarwinianSettings,
    Filter,
    FrictionFilter,
    FrictionSettings,
    PredictabilityFilter,
    PredictabilitySettings,
    TrendRegimeFilter,
    TrendRegimeSettings,
    apply_filters,
    execution_cost_index,
    register_filter,
)
from quant_assets.selection.funnel import (
    atom_id,
    composition_map,
    synthetic_long,
)
from quant_assets.selection.rankers import (
    RANKERS,
    Ranker,
    RankerSettings,
    asset_quadrant,
    finish_ranking,
    prob_map,
    rank_candidates,
    regime_fit_scores,
    register_ranker,
    sleeve_sign,
)

N = 120
SYMBOLS = ["A1", "A2", "A3", "B1", "B2", "B3"]


@pytest.fixture(scope="module")
def factor_returns() -> pd.DataFrame:
    """Two independent factors, three noisy members each (within-block rho ~0.9, across ~0)."""
    rng = np.random.default_rng(7)
    f = rng.normal(0.0, 0.01, (250, 2))
    cols = {}
    for b, name in enumerate(["X", "Y"]):
        for i in range(3):
            cols[f"{name}{i}"] = f[:, b] + 0.3 * rng.normal(0.0, 0.01, 250)
    return pd.DataFrame(cols, index=pd.bdate_range("2023-01-02", periods=250))


def _features(**overrides) -> pd.DataFrame:
    """Six clean candidates: every default filter passes, momentum and return_20d differ."""
    base = pd.DataFrame(
        {
            "momentum": [0.06, 0.05, 0.04, 0.03, -0.02, -0.07],
            "volatility": [0.2] * 6,
            "entropy": [0.5] * 6,
            "efficiency": [0.3] * 6,
            "hurst": [0.6] * 6,
            "kurtosis": [3.0] * 6,
            "return_20d": [0.01, -0.04, 0.08, -0.02, 0.03, -0.09],
            "return_60d": [0.05] * 6,
            "n_obs": [120.0] * 6,
        },
        index=SYMBOLS,
    )
    for col, values in overrides.items():
        for sym, v in values.items():
            base.loc[sym, col] = v
    return base


def _order(frame: pd.DataFrame) -> list[str]:
    return frame.sort_values("rank")["symbol"].tolist()


def _vetoes(frame: pd.DataFrame) -> list[tuple]:
    return [(r.symbol, r.filter, r.reason) for r in frame.itertuples()]


# --- clustering -----------------------------------------------------------------------------


def test_two_factor_blocks_cut_at_half_gives_two(factor_returns):
    res = cut(factor_returns, 0.5)
    assert res.n_clusters == 2
    assert res.labels.tolist() == [1, 1, 1, 2, 2, 2]


def test_tiny_threshold_gives_singletons_and_maxclust_one_gives_one(factor_returns):
    assert cut(factor_returns, 0.05).n_clusters == 6
    res = cut(factor_returns, 0.05, max_clusters=1)
    assert (res.n_clusters, res.recut) == (1, True)
    assert res.labels.tolist() == [1] * 6


def test_max_cluster_ceiling_recuts(factor_returns):
    res = cut(factor_returns, 0.05, max_clusters=3)
    assert (res.n_clusters, res.recut) == (3, True)
    assert not cut(factor_returns, 0.05, max_clusters=6).recut


def test_regime_threshold_and_lookbacks_that_fit(factor_returns):
    settings = ClusteringSettings(thresholds={"CRISIS": 0.05, "TURBULENT": 0.35, "NORMAL": 0.5, "QUIET": 0.5})
    normal = cluster(factor_returns, settings, "NORMAL")
    assert (normal.threshold, normal.n_clusters, normal.lookbacks) == (0.5, 2, (60, 120, 200))
    assert cluster(factor_returns, settings, "CRISIS").n_clusters == 6
    short = cluster(factor_returns.tail(100), settings, "NORMAL")
    assert short.lookbacks == (60,)
    assert cluster(factor_returns.tail(40), settings, "NORMAL").lookbacks == (40,)  # none fit: full window


def test_distance_is_averaged_over_lookbacks(factor_returns):
    dist, used = correlation_distance(factor_returns, (60, 120))
    expected = np.mean([np.sqrt(0.5 * (1 - factor_returns.tail(lb).corr().to_numpy())) for lb in (60, 120)], axis=0)
    np.fill_diagonal(expected, 0.0)
    assert used == (60, 120)
    np.testing.assert_allclose(dist, expected, atol=1e-12)
    np.testing.assert_array_equal(dist, dist.T)


def test_flat_column_counts_as_unrelated(block_returns):
    rets = block_returns.assign(FLAT=0.0)
    dist, _ = correlation_distance(rets)
    assert np.all(np.isfinite(dist))
    np.testing.assert_allclose(dist[-1, :-1], np.sqrt(0.5))
    assert cut(rets, 0.5).labels.tolist() == [1, 1, 1, 2, 2, 2, 3]


def test_perfect_blocks_and_single_asset(block_returns):
    assert correlation_clusters(block_returns, 0.5).tolist() == [1, 1, 1, 2, 2, 2]
    single = cluster(block_returns[["A1"]], ClusteringSettings(), "NORMAL")
    assert (single.labels.tolist(), single.n_clusters) == ([1], 1)
    assert cluster(block_returns[[]], ClusteringSettings(), "NORMAL").n_clusters == 0


def test_threshold_sensitivity_non_increasing(factor_returns):
    table = threshold_sensitivity(factor_returns, ClusteringSettings())
    assert table["threshold"].tolist() == pytest.approx(np.round(np.arange(0.1, 0.9001, 0.05), 2).tolist())
    counts = table["n_clusters"].tolist()
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[0] == 6 and counts[-1] == 2
    assert threshold_sensitivity(factor_returns, ClusteringSettings(), [0.5])["n_clusters"].tolist() == [2]


def test_clustering_settings_validation():
    with pytest.raises(ValidationError, match="exactly the regimes"):
        ClusteringSettings(thresholds={"NORMAL": 0.4})
    with pytest.raises(ValidationError, match="frozen"):
        ClusteringSettings().max_clusters = 3
    with pytest.raises(ValidationError, match="extra"):
        ClusteringSettings(treshold=0.4)
    assert ClusteringSettings(lookbacks=(120, 60, 60)).lookbacks == (60, 120)
    with pytest.raises(ValueError, match="unknown regime"):
        cluster(pd.DataFrame({"a": [0.1, 0.2], "b": [0.2, 0.1]}), ClusteringSettings(), "PANIC")


# --- probability maps ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("rank", [0.01, 0.505, 1.0]),
        ("rank_desc", [1.0, 0.505, 0.01]),
        ("zscore", [1 / 3, 0.5, 2 / 3]),
        ("logistic", [0.268941, 0.5, 0.731059]),
        ("cdf", [0.1, 0.2, 0.3]),
        ("minmax", [0.0, 0.5, 1.0]),
    ],
)
def test_probability_maps(method, expected):
    np.testing.assert_allclose(prob_map(pd.Series([0.1, 0.2, 0.3]), method).to_numpy(), expected, atol=1e-6)


def test_cdf_outside_unit_interval_uses_normal_cdf_and_nan_is_001():
    np.testing.assert_allclose(
        prob_map(pd.Series([-1.0, 0.0, 1.0]), "cdf").to_numpy(), [0.158655, 0.5, 0.841345], atol=1e-6
    )
    out = prob_map(pd.Series([0.3, np.nan, 0.1]), "rank")
    np.testing.assert_allclose(out.to_numpy(), [1.0, 0.01, 0.01])
    assert prob_map(pd.Series([np.nan, np.nan]), "zscore").tolist() == [0.01, 0.01]
    assert prob_map(pd.Series([5.0]), "rank").tolist() == [1.0]
    with pytest.raises(ValueError, match="unknown probability map"):
        prob_map(pd.Series([1.0]), "softmax")


# --- rankers ---------------------------------------------------------------------------


def test_sleeve_sign():
    assert [
        sleeve_sign(lg, d)
        for lg, d in [("trend", "long"), ("trend", "SHORT"), ("reversion", "long"), ("reversion", "short")]
    ] == [1, -1, -1, 1]
    with pytest.raises(ValueError, match="logic"):
        sleeve_sign("carry", "long")
    with pytest.raises(ValueError, match="direction"):
        sleeve_sign("trend", "flat")


def test_signal_long_trend_ranks_highest_momentum_first():
    out = rank_candidates(_features(), RankerSettings(), "trend", "long")
    assert list(out.columns) == ["symbol", "score", "rank"]
    assert out["symbol"].tolist() == ["A1", "A2", "A3", "B1", "B2", "B3"]
    assert out["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(out["score"], [0.06, 0.05, 0.04, 0.03, -0.02, -0.07])


def test_signal_short_trend_ranks_most_bearish_first():
    out = rank_candidates(_features(), RankerSettings(), "trend", "short")
    assert out["symbol"].tolist() == ["B3", "B2", "B1", "A3", "A2", "A1"]
    np.testing.assert_allclose(out["score"], [0.07, 0.02, -0.03, -0.04, -0.05, -0.06])


def test_signal_reversion_buys_losers_and_sells_winners():
    assert _order(rank_candidates(_features(), RankerSettings(), "reversion", "long")) == [
        "B3",
        "A2",
        "B1",
        "A1",
        "B2",
        "A3",
    ]
    assert _order(rank_candidates(_features(), RankerSettings(), "reversion", "short")) == [
        "A3",
        "B2",
        "A1",
        "B1",
        "A2",
        "B3",
    ]


def test_ties_broken_by_symbol_and_nan_last():
    score = pd.Series([0.1, np.nan, 0.1, 0.2], index=["ZZ", "AA", "BB", "CC"])
    out = finish_ranking(score)
    assert out["symbol"].tolist() == ["CC", "BB", "ZZ", "AA"]
    assert out["rank"].tolist() == [1, 2, 3, 4]


def _mps_features() -> pd.DataFrame:
    return pd.DataFrame(
        {"momentum": [0.3, 0.1, -0.2], "entropy": [0.9, 0.5, 0.7], "n_obs": [252.0, 126.0, 63.0]}, index=["X", "Y", "Z"]
    )


def test_mps_alpha_is_product_of_weighted_probabilities():
    settings = RankerSettings(name="mps", mps_weights={"momentum": 2.0, "entropy": 1.0, "survival": 1.0})
    out = rank_candidates(_mps_features(), settings, "trend", "long").set_index("symbol")
    # momentum rank (X 1.0, Y 0.505, Z 0.01); entropy rank_desc (X 0.01, Y 1.0, Z 0.505); survival cdf
    np.testing.assert_allclose(out["momentum_prob"][["X", "Y", "Z"]], [1.0, 0.505, 0.01])
    np.testing.assert_allclose(out["entropy_prob"][["X", "Y", "Z"]], [0.01, 1.0, 0.505])
    np.testing.assert_allclose(out["survival_prob"][["X", "Y", "Z"]], [1.0, 0.5, 0.25])
    alpha = {"X": 1.0**2 * 0.01 * 1.0, "Y": 0.505**2 * 1.0 * 0.5, "Z": 0.01**2 * 0.505 * 0.25}
    np.testing.assert_allclose(out["score"][["X", "Y", "Z"]], [alpha["X"], alpha["Y"], alpha["Z"]])
    assert out.sort_values("rank").index.tolist() == ["Y", "X", "Z"]


def test_mps_short_flips_directional_features_only():
    settings = RankerSettings(name="mps", mps_weights={"momentum": 1.0})
    assert _order(rank_candidates(_mps_features(), settings, "trend", "long")) == ["X", "Y", "Z"]
    assert _order(rank_candidates(_mps_features(), settings, "trend", "short")) == ["Z", "Y", "X"]
    quality = RankerSettings(name="mps", mps_weights={"entropy": 1.0})  # low entropy is good for any sleeve
    assert _order(rank_candidates(_mps_features(), quality, "trend", "short")) == ["Y", "Z", "X"]
    assert _order(rank_candidates(_mps_features(), quality, "trend", "long")) == ["Y", "Z", "X"]


def test_mps_settings_errors():
    with pytest.raises(ValidationError, match="finite and >= 0"):
        RankerSettings(mps_weights={"momentum": -1.0})
    with pytest.raises(ValueError, match="probability map"):
        rank_candidates(_mps_features(), RankerSettings(name="mps", mps_weights={"mystery": 1.0}), "trend", "long")
    with pytest.raises(KeyError, match="no such column"):
        rank_candidates(_mps_features(), RankerSettings(name="mps", mps_weights={"stability": 1.0}), "trend", "long")


def test_asset_quadrant():
    mom = pd.Series([0.2, 0.2, -0.2, -0.2, 0.0])
    vol = pd.Series([0.2, 0.9, 0.9, 0.2, 0.3])  # median 0.3 -> stressed above 0.45
    assert asset_quadrant(mom, vol, 0.05, 1.5).tolist() == [
        "EXPANSION",
        "INFLATIONARY_TREND",
        "CRISIS",
        "STAGNATION",
        "NORMAL",
    ]


def test_regime_fit_scores_exact():
    h = pd.Series([0.7, 0.5, 0.3, 0.6])
    q = pd.Series(["EXPANSION", "STAGNATION", "CRISIS", "NORMAL"])
    vc = pd.Series([0.6, 0.6, 0.1, np.nan])
    np.testing.assert_allclose(regime_fit_scores(h, q, vc, "NORMAL", "trend"), [1.0, -0.2, -0.2, 0.1])
    np.testing.assert_allclose(regime_fit_scores(h, q, vc, "NORMAL", "reversion"), [-0.4, 0.6, 0.7, 0.2])
    np.testing.assert_allclose(regime_fit_scores(h, q, vc, "QUIET", "reversion"), [-0.2, 0.8, 0.9, 0.4])


def test_regime_fit_ranker_direction_aware():
    feats = pd.DataFrame(
        {
            "momentum": [0.3, -0.3, 0.0],
            "volatility": [0.2, 0.2, 0.2],
            "hurst": [0.6, 0.6, 0.6],
            "vol_clustering": [0.0, 0.0, 0.0],
            "n_obs": [120.0, 120.0, 120.0],
        },
        index=["UP", "DOWN", "FLAT"],
    )
    settings = RankerSettings(name="regime_fit")
    long_ = rank_candidates(feats, settings, "trend", "long", "NORMAL").set_index("symbol")
    assert long_.sort_values("rank").index.tolist() == ["UP", "FLAT", "DOWN"]
    np.testing.assert_allclose(long_["score"][["UP", "FLAT", "DOWN"]], [0.7, 0.1, -0.2])
    assert long_["quadrant"].to_dict() == {"UP": "EXPANSION", "DOWN": "STAGNATION", "FLAT": "NORMAL"}
    short = rank_candidates(feats, settings, "trend", "short", "NORMAL")
    assert short["symbol"].tolist() == ["DOWN", "FLAT", "UP"]
    few = feats.assign(n_obs=[30.0, 120.0, 120.0])
    assert rank_candidates(few, settings, "trend", "long", "NORMAL").set_index("symbol").loc["UP", "score"] == 0.0


def test_ranker_registry():
    class Alphabetical(Ranker):
        name = "alphabetical_test"

        def rank(self, features, settings, logic, direction, regime):
            return finish_ranking(pd.Series(0.0, index=features.index))

    register_ranker(Alphabetical())
    try:
        out = rank_candidates(_features(), RankerSettings(name="alphabetical_test"), "trend", "long")
        assert out["symbol"].tolist() == sorted(SYMBOLS)
    finally:
        RANKERS.pop("alphabetical_test")
    assert {"mps", "signal", "regime_fit"} <= set(RANKERS)
    with pytest.raises(ValueError, match="unknown ranker"):
        rank_candidates(_features(), RankerSettings(name="nope"), "trend", "long")


# --- filters ----------------------------------------------------------------------------------


def test_darwinian_missing_health_survival():
    feats = _features(momentum={"A1": np.nan}, n_obs={"B1": 20.0, "B2": 26.0}).assign(
        healthy=[True, False, True, True, True, True]
    )
    out = apply_filters(feats, [DarwinianFilter()], "long", required=["momentum"])
    assert list(out.columns) == VETO_COLUMNS
    assert _vetoes(out) == [
        ("A1", "darwinian", "missing_momentum"),
        ("A2", "darwinian", "failed_health"),
        ("B1", "darwinian", "survival_below_min"),
    ]
    assert out.loc[2, "value"] == pytest.approx(20 / 252) and out.loc[2, "threshold"] == 0.1


def test_darwinian_checks_columns_of_the_other_filters():
    feats = _features(hurst={"B3": np.nan})
    out = apply_filters(feats, ["darwinian", "predictability"], "long")
    assert _vetoes(out) == [("B3", "darwinian", "missing_hurst")]
    with pytest.raises(KeyError, match="kurtosis"):
        apply_filters(feats.drop(columns="kurtosis"), ["darwinian", "predictability"], "long")
    # a switched-off check needs no column
    off = PredictabilityFilter(PredictabilitySettings(kurtosis_max=None))
    assert apply_filters(feats.drop(columns="kurtosis"), [DarwinianFilter(), off], "long").empty is False


def test_predictability_exact_vetoes_raw_hurst_band():
    feats = _features(
        entropy={"A1": 0.96},
        efficiency={"A2": 0.01},
        hurst={"A3": 0.5, "B1": 0.52},
        kurtosis={"B2": 25.0},
        volatility={"B3": 3.0},
    )
    feats["hurst_clean"] = (1 - 2 * (feats["hurst"] - 0.5).abs()).clip(0, 1)
    out = apply_filters(feats, [PredictabilityFilter()], "long")
    assert _vetoes(out) == [
        ("A1", "predictability", "entropy_above_max"),
        ("A2", "predictability", "efficiency_below_min"),
        ("A3", "predictability", "hurst_random_walk"),  # raw H 0.5; B1 on the edge passes
        ("B2", "predictability", "kurtosis_above_max"),
        ("B3", "predictability", "volatility_above_max"),
    ]
    assert out["value"].tolist() == [0.96, 0.01, 0.5, 25.0, 3.0]
    assert out["threshold"].tolist() == [0.95, 0.02, 0.48, 20.0, 2.5]


def test_predictability_thresholds_are_strict_and_overridable():
    feats = _features(entropy={"A1": 0.95}, efficiency={"A2": 0.02})
    assert apply_filters(feats, ["predictability"], "long").empty
    tight = apply_filters(feats, ["predictability"], "long", overrides={"predictability": {"entropy_max": 0.9}})
    assert _vetoes(tight) == [("A1", "predictability", "entropy_above_max")]
    with pytest.raises(ValidationError):
        apply_filters(feats, ["predictability"], "long", overrides={"predictability": {"entropy_max": 2.0}})
    with pytest.raises(ValueError, match="not in the chain"):
        apply_filters(feats, ["predictability"], "long", overrides={"friction": {"hurdle": 0.1}})
    with pytest.raises(ValidationError, match="hurst_band"):
        PredictabilitySettings(hurst_band=(0.55, 0.45))


def test_eci_formula():
    vol = pd.Series([0.2, 0.2, 0.2, 0.4])
    adv = pd.Series([1e6, np.nan, 0.0, 4e6])
    np.testing.assert_allclose(execution_cost_index(vol, adv), [0.2, 0.02, 0.02, 0.2])
    np.testing.assert_allclose(execution_cost_index(vol, None), [0.02, 0.02, 0.02, 0.04])


def test_friction_vetoes_and_waiver():
    feats = pd.DataFrame(
        {"momentum": [0.05, 0.01, 1.5, 1.5, -0.3], "volatility": [0.2] * 5, "adv": [np.nan, np.nan, 1e6, 1e6, np.nan]},
        index=["OK", "THIN", "W1", "W2", "DN"],
    )
    # net: OK 0.03, THIN -0.01, W1/W2 1.3, DN -0.32 (long)
    flt = FrictionFilter(FrictionSettings(hurdle=0.02))
    assert _vetoes(apply_filters(feats, [flt], "long")) == [
        ("THIN", "friction", "net_alpha_below_hurdle"),
        ("DN", "friction", "net_alpha_below_hurdle"),
    ]
    np.testing.assert_allclose(apply_filters(feats, [flt], "long")["value"], [-0.01, -0.32])
    # short: bearish momentum 0.3 - 0.02 = 0.28 passes; the longs' momentum now counts against them
    assert _vetoes(apply_filters(feats, [flt], "short"))[0:4] == [
        ("OK", "friction", "net_alpha_below_hurdle"),
        ("THIN", "friction", "net_alpha_below_hurdle"),
        ("W1", "friction", "net_alpha_below_hurdle"),
        ("W2", "friction", "net_alpha_below_hurdle"),
    ]
    # the waiver: momentum > 1 and net >= 1.25 x hurdle (bites only for a negative hurdle)
    neg = FrictionFilter(FrictionSettings(hurdle=-1.0))
    feats2 = pd.DataFrame({"momentum": [1.1, 0.5], "volatility": [2.3, 1.6], "adv": [1e6, 1e6]}, index=["S", "T"])
    # net S = -1.2 (< -1.0 but >= -1.25 and momentum > 1: waived); T = -1.1 (vetoed)
    assert _vetoes(apply_filters(feats2, [neg], "long")) == [("T", "friction", "net_alpha_below_hurdle")]


def test_trend_regime_proxy_with_fallback():
    feats = pd.DataFrame(
        {"rating_ma": [0.5, -0.2, np.nan, np.nan, 0.0], "return_60d": [-0.1, 0.3, 0.2, np.nan, 0.1]},
        index=["P", "Q", "R", "S", "T"],
    )
    flt = TrendRegimeFilter()
    assert _vetoes(apply_filters(feats, [flt], "long")) == [
        ("S", "trend_regime", "trend_unknown"),
        ("Q", "trend_regime", "below_long_ma"),
        ("T", "trend_regime", "below_long_ma"),
    ]
    assert _vetoes(apply_filters(feats, [flt], "short")) == [
        ("S", "trend_regime", "trend_unknown"),
        ("P", "trend_regime", "above_long_ma"),
        ("R", "trend_regime", "above_long_ma"),
        ("T", "trend_regime", "above_long_ma"),
    ]
    only_returns = feats.drop(columns="rating_ma")
    assert _vetoes(apply_filters(only_returns, [flt], "long")) == [
        ("S", "trend_regime", "trend_unknown"),
        ("P", "trend_regime", "below_long_ma"),
    ]
    wide = TrendRegimeFilter(TrendRegimeSettings(threshold=0.25))
    assert [v[0] for v in _vetoes(apply_filters(feats, [wide], "long"))] == ["S", "Q", "R", "T"]
    with pytest.raises(KeyError, match="trend_regime needs"):
        apply_filters(feats[[]], [flt], "long")


def test_benchmarks_never_vetoed_and_chain_order_kept():
    feats = _features(entropy={"A1": 0.99}, n_obs={"A1": 10.0, "B1": 10.0})
    out = apply_filters(feats, ["darwinian", "predictability"], "long", benchmarks=["B1"])
    assert _vetoes(out) == [("A1", "darwinian", "survival_below_min"), ("A1", "predictability", "entropy_above_max")]


def test_filter_registry_and_type_checks():
    @register_filter
    class NoBanks(Filter):
        name = "no_banks_test"
        settings_model = DarwinianSettings  # any model; unused

        def vetoes(self, features, direction, required=()):
            return [
                {"symbol": s, "filter": self.name, "reason": "bank", "value": np.nan, "threshold": np.nan}
                for s in features.index
                if s.startswith("B")
            ]

    try:
        assert [v[0] for v in _vetoes(apply_filters(_features(), ["no_banks_test"], "long"))] == ["B1", "B2", "B3"]
    finally:
        FILTERS.pop("no_banks_test")
    with pytest.raises(ValueError, match="unknown filter"):
        apply_filters(_features(), ["nope"], "long")
    with pytest.raises(TypeError, match="needs FrictionSettings"):
        FrictionFilter(PredictabilitySettings())
    with pytest.raises(ValueError, match="direction"):
        apply_filters(_features(), ["darwinian"], "sideways")


# --- synthesis ---------------------------------------------------------------------


def test_atom_id_format():
    assert atom_id("BINANCE:BTC_USDT", "trend", "SHORT") == "BINANCE:BTC_USDT|trend|short"
    assert atom_id("AAPL", "reversion", "long") == "AAPL|reversion|long"


def test_composition_map_signs_and_odd_symbols():
    odd = ["BINANCE:BTC_USDT", "BINANCE:BTC_USDC", "NYSE:BRK_B"]
    short = composition_map(odd, "trend", "SHORT")
    assert list(short.columns) == ["atom_id", "symbol", "logic", "direction", "sign"]
    assert short["atom_id"].tolist() == [
        "BINANCE:BTC_USDT|trend|short",
        "BINANCE:BTC_USDC|trend|short",
        "NYSE:BRK_B|trend|short",
    ]
    assert short["symbol"].tolist() == odd and short["sign"].tolist() == [-1, -1, -1]
    assert composition_map(["X"], "reversion", "long")[["direction", "sign"]].values.tolist() == [["long", 1]]
    # the reference's "first underscore" parse would have merged BTC_USDT and BTC_USDC
    assert len({i.split("_")[0] for i in short["atom_id"]}) < len(odd)


def test_synthetic_long_caps_short_loss():
    r = pd.DataFrame({"x": [0.1, -0.2, 4.0]})
    pd.testing.assert_frame_equal(synthetic_long(r, "long"), r)
    np.testing.assert_allclose(synthetic_long(r, "short")["x"], [-0.1, 0.2, -1.0])


def test_a_filter_without_settings_of_its_own_can_be_built():
    """Its settings model used to be pydantic's BaseModel itself, which refuses to be instantiated."""

    class NoNaNMomentum(Filter):
        name = "no_nan_momentum"

        def vetoes(self, features, direction, required=()):
            bad = features[features["momentum"].isna()]
            return [
                {"symbol": s, "filter": self.name, "reason": "momentum is NaN", "value": np.nan, "threshold": np.nan}
                for s in bad["symbol"]
            ]

    f = NoNaNMomentum()
    frame = pd.DataFrame({"symbol": ["A", "B"], "momentum": [0.1, np.nan]})
    assert [v["symbol"] for v in f.vetoes(frame, "long")] == ["B"]
    assert f.with_overrides(None) is f
    with pytest.raises(ValidationError, match="threshold"):
        f.with_overrides({"threshold": 3})
