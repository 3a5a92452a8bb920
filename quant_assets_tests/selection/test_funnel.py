"""run_funnel end to end on hand-built inputs: recruitment per cluster, the caps, every relaxation stage
(hierarchical threshold relaxation) with the stage that picked each winner, lifted vetoes, synthesis and settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quant_assets.selection.clustering import ClusteringSettings, cut
from quant_assets.selection.filters import FrictionSettings, PredictabilitySettings
from quant_assets.selection.funnel import (
    FUNNEL_VETO_COLUMNS,
    SELECTION_COLUMNS,
    STAGES,
    RelaxationSettings,
    SelectionSettings,
    run_funnel,
)
from quant_assets.selection.rankers import RankerSettings

N = 120
SYMBOLS = ["A1", "A2", "A3", "B1", "B2", "B3"]


@pytest.fixture(scope="module")
def rets(block_returns) -> pd.DataFrame:
    """Two blocks of perfectly correlated assets (clusters A and B), from conftest."""
    return block_returns


def feats(**overrides) -> pd.DataFrame:
    """Clean candidates (every default filter passes); trend long ranks A1 A2 A3 B1 B2 B3."""
    base = pd.DataFrame(
        {
            "momentum": [0.06, 0.05, 0.04, 0.03, -0.02, -0.07],
            "volatility": [0.2] * 6,
            "stability": [5.0] * 6,
            "entropy": [0.5] * 6,
            "hurst": [0.6] * 6,
            "efficiency": [0.3] * 6,
            "kurtosis": [3.0] * 6,
            "return_20d": [0.01, -0.04, 0.08, -0.02, 0.03, -0.09],
            "return_60d": [0.05, 0.05, -0.05, 0.05, 0.05, -0.05],
            "adv": [np.nan] * 6,
            "n_obs": [120.0] * 6,
        },
        index=SYMBOLS,
    )
    for col, values in overrides.items():
        for sym, v in values.items():
            base.loc[sym, col] = v
    return base


def settings(**kw) -> SelectionSettings:
    return SelectionSettings(**({"top_n_per_cluster": 2, "max_winners": 8, "min_winners": 1} | kw))


def run(f=None, r=None, s=None, logic="trend", direction="long", regime="NORMAL", clusters=None, **kw):
    return run_funnel(feats() if f is None else f, r, clusters, regime, s or settings(), logic, direction, **kw)


def winners(res) -> dict[str, str]:
    sel = res.selection[res.selection["selected"]]
    return dict(zip(sel["symbol"], sel["selected_by"]))


def counts(res) -> dict[str, int]:
    return {k: v for k, v in zip(res.stage_counts["stage"], res.stage_counts["winners"]) if v}


# --- strict recruitment ----------------------------------------------------------------------------


def test_strict_selection_frame_exact(rets):
    res = run(r=rets)
    sel = res.selection
    assert list(sel.columns) == SELECTION_COLUMNS
    expected = pd.DataFrame(
        {
            "symbol": SYMBOLS,
            "direction": "LONG",
            "score": [0.06, 0.05, 0.04, 0.03, -0.02, -0.07],
            "rank": [1, 2, 3, 4, 5, 6],
            "cluster": [1, 1, 1, 2, 2, 2],
            "vetoed": False,
            "veto_reason": "",
            "selected": [True, True, False, True, True, False],
            "selected_by": ["strict", "strict", "", "strict", "strict", ""],
            "atom_id": [f"{s}|trend|long" for s in SYMBOLS],
            "sign": 1,
        }
    )
    pd.testing.assert_frame_equal(sel, expected, check_dtype=False)
    assert res.stage_counts["stage"].tolist() == list(STAGES)
    assert counts(res) == {"strict": 4}
    assert list(res.vetoes.columns) == FUNNEL_VETO_COLUMNS and res.vetoes.empty
    assert res.winners == ["A1", "A2", "B1", "B2"]
    assert res.composition["atom_id"].tolist() == ["A1|trend|long", "A2|trend|long", "B1|trend|long", "B2|trend|long"]
    pd.testing.assert_frame_equal(
        res.streams, rets[res.winners].set_axis(res.composition["atom_id"], axis=1), check_names=False
    )


def test_max_winners_caps_by_rank(rets):
    assert winners(run(r=rets, s=settings(top_n_per_cluster=2, max_winners=3))) == {
        "A1": "strict",
        "A2": "strict",
        "B1": "strict",
    }


def test_short_sleeve_picks_most_bearish_per_cluster_and_flips_streams(rets):
    res = run(r=rets, s=settings(top_n_per_cluster=1), direction="short")
    assert res.selection["symbol"].tolist() == ["B3", "B2", "B1", "A3", "A2", "A1"]
    assert set(res.selection["direction"]) == {"SHORT"} and set(res.selection["sign"]) == {
        -1
    }  # a short sleeve only ever emits shorts
    assert winners(res) == {"B3": "strict", "A3": "strict"}
    assert res.composition[["atom_id", "symbol", "sign"]].values.tolist() == [
        ["B3|trend|short", "B3", -1],
        ["A3|trend|short", "A3", -1],
    ]
    np.testing.assert_allclose(res.streams.to_numpy(), -rets[["B3", "A3"]].clip(upper=1.0).to_numpy())


def test_reversion_long_buys_the_losers(rets):
    res = run(r=rets, s=settings(top_n_per_cluster=1), logic="reversion")
    assert winners(res) == {"B3": "strict", "A2": "strict"}
    assert res.composition["atom_id"].tolist() == ["B3|reversion|long", "A2|reversion|long"]


def test_strict_vetoes_recorded_with_first_reason(rets):
    f = feats(entropy={"A1": 0.99}, kurtosis={"A1": 30.0, "B2": 30.0})
    res = run(f, rets)
    assert res.vetoes[["symbol", "filter", "reason", "lifted_by"]].values.tolist() == [
        ["A1", "predictability", "entropy_above_max", ""],
        ["A1", "predictability", "kurtosis_above_max", ""],
        ["B2", "predictability", "kurtosis_above_max", ""],
    ]
    sel = res.selection.set_index("symbol")
    assert sel.loc["A1", "veto_reason"] == "entropy_above_max" and sel.loc["B2", "vetoed"]
    assert winners(res) == {"A2": "strict", "A3": "strict", "B1": "strict", "B3": "strict"}


# --- relaxation stages -------------------------------------------------------------------------------


def test_stage2_relaxed_thresholds_lift_near_misses(rets):
    # entropy 0.97 > 0.95 (strict) but <= min(1, 0.95 x 1.2); efficiency 0.018 < 0.02 but >= 0.016
    f = feats(entropy={"A2": 0.97}, efficiency={"B2": 0.018})
    res = run(f, rets, settings(top_n_per_cluster=3, min_winners=6))
    assert winners(res) == {
        "A1": "strict",
        "A3": "strict",
        "B1": "strict",
        "B3": "strict",
        "A2": "relaxed_thresholds",
        "B2": "relaxed_thresholds",
    }
    assert res.vetoes[["symbol", "reason", "lifted_by"]].values.tolist() == [
        ["A2", "entropy_above_max", "relaxed_thresholds"],
        ["B2", "efficiency_below_min", "relaxed_thresholds"],
    ]
    assert res.selection.set_index("symbol").loc[["A2", "B2"], "vetoed"].tolist() == [True, True]  # strict view
    assert counts(res) == {"strict": 4, "relaxed_thresholds": 2}


def test_stage2_not_run_when_enough_winners(rets):
    f = feats(entropy={"A2": 0.97})
    res = run(f, rets, settings(top_n_per_cluster=3, min_winners=5))
    assert "A2" not in winners(res) and res.vetoes["lifted_by"].tolist() == [""]


def test_stage3_fully_vetoed_cluster_sends_its_representative(rets):
    f = feats(kurtosis={"B1": 30.0, "B2": 30.0, "B3": 30.0})  # kurtosis is not relaxed in stage 2
    res = run(f, rets, settings(top_n_per_cluster=1, min_winners=2))
    assert winners(res) == {"A1": "strict", "B1": "cluster_representative"}
    lifted = res.vetoes.set_index("symbol")["lifted_by"].to_dict()
    assert lifted == {"B1": "cluster_representative", "B2": "", "B3": ""}
    assert counts(res) == {"strict": 1, "cluster_representative": 1}


def test_stage3_representative_must_pass_darwinian_and_entropy_cap(rets):
    f = feats(kurtosis={"B1": 30.0, "B2": 30.0, "B3": 30.0}, n_obs={"B1": 10.0}, entropy={"B2": 0.9995})
    res = run(f, rets, settings(top_n_per_cluster=1, min_winners=2))
    assert winners(res) == {"A1": "strict", "B3": "cluster_representative"}


def test_stage4_global_topup_then_scarcity(rets):
    res = run(r=rets, s=settings(top_n_per_cluster=1, min_winners=4))
    assert winners(res) == {"A1": "strict", "B1": "strict", "A2": "global_topup", "A3": "global_topup"}

    f = feats(kurtosis={s: 30.0 for s in ["A2", "A3", "B1", "B2", "B3"]})
    res = run(f, rets, settings(top_n_per_cluster=1, min_winners=3))
    assert winners(res) == {"A1": "strict", "B1": "cluster_representative", "A2": "scarcity"}
    assert res.vetoes.set_index("symbol")["lifted_by"].to_dict() == {
        "A2": "scarcity",
        "A3": "",
        "B1": "cluster_representative",
        "B2": "",
        "B3": "",
    }
    assert counts(res) == {"strict": 1, "cluster_representative": 1, "scarcity": 1}


def test_disabled_stages_and_no_score_never_picked(rets):
    f = feats(kurtosis={s: 30.0 for s in ["A2", "A3", "B1", "B2", "B3"]})
    only_strict = settings(top_n_per_cluster=1, min_winners=3, relaxation=RelaxationSettings(stages=()))
    assert winners(run(f, rets, only_strict)) == {"A1": "strict"}
    f = feats(momentum={"A1": np.nan}, entropy={"B2": np.nan})
    res = run(f, rets, settings(top_n_per_cluster=3, min_winners=6, max_winners=6))
    assert res.selection["symbol"].tolist()[-1] == "A1"  # no score ranks last
    assert res.selection.set_index("symbol").loc[["A1", "B2"], "veto_reason"].tolist() == [
        "missing_momentum",
        "missing_entropy",
    ]
    assert winners(res) == {"A2": "strict", "A3": "strict", "B1": "strict", "B3": "strict", "B2": "scarcity"}


def test_min_winners_above_universe_selects_every_scored_name(rets):
    res = run(r=rets[["A1", "A2"]], s=settings(top_n_per_cluster=1, min_winners=8, max_winners=8))
    assert res.selection["symbol"].tolist() == ["A1", "A2"]
    assert winners(res) == {"A1": "strict", "A2": "global_topup"}


# --- filters in the chain, benchmarks, clusters -----------------------------------------------------


def test_benchmark_never_vetoed_never_recruited(rets):
    f = feats(kurtosis={"B1": 30.0, "A1": 30.0})
    res = run(f, rets, settings(top_n_per_cluster=1), benchmarks=["B1"])
    assert res.vetoes["symbol"].tolist() == ["A1"]
    assert winners(res) == {"A2": "strict", "B2": "strict"}  # B1 is a reference: its cluster sends B2


def test_friction_and_trend_regime_in_the_chain(rets):
    s = settings(
        filters=("predictability", "friction", "trend_regime"),
        friction=FrictionSettings(hurdle=0.02),
        top_n_per_cluster=3,
    )
    assert s.filters == ("darwinian", "predictability", "friction", "trend_regime")
    res = run(r=rets, s=s)
    # ECI = 0.2 x sqrt(1e6 / 1e8) = 0.02; net = momentum - 0.02 < 0.02 for A3 B1 B2 B3; A3, B3 below their MA
    assert res.vetoes[["symbol", "reason"]].values.tolist() == [
        ["A3", "net_alpha_below_hurdle"],
        ["B1", "net_alpha_below_hurdle"],
        ["B2", "net_alpha_below_hurdle"],
        ["B3", "net_alpha_below_hurdle"],
        ["A3", "below_long_ma"],
        ["B3", "below_long_ma"],
    ]
    assert winners(res) == {"A1": "strict", "A2": "strict"}
    short = run(r=rets, s=s, direction="short")  # bearish momentum; short needs price below its MA
    assert winners(short) == {"B3": "strict"}


def test_regime_sets_the_cluster_threshold(rets):
    loose = settings(
        clustering=ClusteringSettings(thresholds={"CRISIS": 0.01, "TURBULENT": 0.35, "NORMAL": 0.4, "QUIET": 2.0}),
        top_n_per_cluster=1,
    )
    assert run(r=rets, s=loose, regime="NORMAL").clusters.n_clusters == 2
    quiet = run(r=rets, s=loose, regime="QUIET")
    assert quiet.clusters.n_clusters == 1 and winners(quiet) == {"A1": "strict"}
    with pytest.raises(ValueError, match="unknown regime"):
        run(r=rets, regime="BULL")


def test_given_clusters_are_used_and_candidates_need_returns_and_labels(rets):
    given = cut(rets[["A1", "A2", "A3", "B1"]], 0.5)  # B1 alone; B2, B3 have no label
    extra = pd.concat([feats(), feats().loc[["A1"]].rename(index={"A1": "GHOST"})])
    res = run(extra, rets, settings(top_n_per_cluster=1), clusters=given)
    assert res.selection["symbol"].tolist() == ["A1", "A2", "A3", "B1"]
    assert winners(res) == {"A1": "strict", "B1": "strict"}


def test_no_overlap_gives_empty_frames(rets):
    res = run(feats().rename(index=lambda s: s + "_X"), rets)
    assert res.selection.empty and list(res.selection.columns) == SELECTION_COLUMNS
    assert res.vetoes.empty and list(res.vetoes.columns) == FUNNEL_VETO_COLUMNS
    assert res.composition.empty and res.stage_counts["winners"].sum() == 0


def test_ties_broken_by_symbol_and_input_order_irrelevant(rets):
    f = feats(momentum={"A1": 0.05, "A2": 0.05, "B1": 0.05})
    res = run(f, rets, settings(top_n_per_cluster=1))
    assert res.selection["symbol"].tolist()[:3] == ["A1", "A2", "B1"]
    assert winners(res) == {"A1": "strict", "B1": "strict"}
    shuffled = run(f.iloc[::-1], rets[rets.columns[::-1]], settings(top_n_per_cluster=1))
    pd.testing.assert_frame_equal(shuffled.selection.drop(columns="cluster"), res.selection.drop(columns="cluster"))


def test_odd_symbols_travel_intact(rets):
    odd = ["BINANCE:BTC_USDT", "BINANCE:BTC_USDC", "NYSE:BRK_B", "BTC", "A_", "_A"]
    res = run(feats().set_axis(odd), rets.set_axis(odd, axis=1), settings(top_n_per_cluster=3), direction="short")
    assert sorted(res.selection["symbol"]) == sorted(odd)
    lookup = dict(zip(res.composition["atom_id"], res.composition["symbol"]))
    assert lookup["BINANCE:BTC_USDT|trend|short"] == "BINANCE:BTC_USDT"
    assert res.streams.columns.tolist() == res.composition["atom_id"].tolist()
    assert len(set(res.selection["atom_id"])) == len(odd)


def test_mps_ranker_through_the_funnel(rets):
    s = settings(
        ranker=RankerSettings(name="mps", mps_weights={"momentum": 1.0, "stability": 1.0}), top_n_per_cluster=1
    )
    res = run(r=rets, s=s)
    assert {"momentum_prob", "stability_prob"} <= set(res.rankings.columns)
    assert winners(res) == {"A1": "strict", "B1": "strict"}
    assert winners(run(r=rets, s=s, direction="short")) == {"B3": "strict", "A3": "strict"}


def test_duplicate_symbols_rejected(rets):
    with pytest.raises(ValueError, match="duplicate symbols"):
        run(pd.concat([feats(), feats().iloc[:1]]), rets)


# --- settings ------------------------------------------------------------------------------------------


def test_settings_defaults_and_validation():
    s = SelectionSettings()
    assert (s.top_n_per_cluster, s.max_winners, s.min_winners, s.filters) == (2, 8, 3, ("darwinian", "predictability"))
    assert s.ranker.name == "signal" and s.clustering.thresholds["CRISIS"] == 0.3
    assert s.predictability == PredictabilitySettings()
    with pytest.raises(ValidationError, match="first filter"):
        SelectionSettings(filters=("predictability", "darwinian"))
    with pytest.raises(ValidationError, match="unknown filters"):
        SelectionSettings(filters=("darwinian", "astrology"))
    with pytest.raises(ValidationError, match="repeat"):
        SelectionSettings(filters=("darwinian", "friction", "friction"))
    with pytest.raises(ValidationError, match="exceeds max_winners"):
        SelectionSettings(min_winners=9, max_winners=8)
    with pytest.raises(ValidationError, match="extra"):
        SelectionSettings(cluster_threshold=0.5)
    with pytest.raises(ValidationError, match="frozen"):
        s.max_winners = 3
    with pytest.raises(ValidationError):
        RelaxationSettings(stages=("strict",))
    assert SelectionSettings.model_validate(s.model_dump()) == s  # round-trips (YAML manifests)


def test_default_mps_on_the_full_feature_set(rets):
    """Every promised feature column; no volume (liquidity NaN -> 0.01 for all, so it cannot reorder)."""
    f = feats().assign(
        liquidity=np.nan,
        antifragility=[0.4, 0.3, 0.2, 0.1, 0.1, 0.1],
        skew=0.1,
        cvar=-0.02,
        hurst_clean=(1 - 2 * (feats()["hurst"] - 0.5).abs()),
    )
    res = run(f, rets, settings(ranker=RankerSettings(name="mps"), top_n_per_cluster=1))
    probs = {c for c in res.rankings.columns if c.endswith("_prob")}
    assert probs == {
        f"{k}_prob"
        for k in (
            "momentum",
            "stability",
            "liquidity",
            "entropy",
            "efficiency",
            "hurst_clean",
            "survival",
            "antifragility",
            "skew",
            "kurtosis",
            "cvar",
        )
    }
    assert set(res.rankings["liquidity_prob"]) == {0.01}
    assert res.rankings["symbol"].tolist() == SYMBOLS  # momentum and antifragility both favour A1 .. B3
    assert winners(res) == {"A1": "strict", "B1": "strict"}
    res = run(
        f.assign(vol_clustering=0.6), rets, settings(ranker=RankerSettings(name="regime_fit"), top_n_per_cluster=1)
    )
    # H 0.6 -> +0.1, vol clustering -> +0.1; A1 (momentum 0.06 > 0.05) EXPANSION +0.6, B3 STAGNATION -0.3
    np.testing.assert_allclose(res.rankings["score"], [0.8, 0.2, 0.2, 0.2, 0.2, -0.1])
    assert winners(res) == {"A1": "strict", "B1": "strict"}  # B1 and B2 tie at 0.2: symbol order


def test_no_stage_recruits_a_name_above_the_toxicity_ceiling(rets):
    """global_topup and scarcity used to recruit names above the 0.999 entropy ceiling that only
    cluster representatives respected; a scarce universe now yields fewer winners instead."""
    # A2 is relaxed back in by stage 2 (0.9995 <= min(1, 0.95 x 1.2)), then reaches global_topup
    f = feats(entropy={"A2": 0.9995, "A3": 0.9999})
    res = run(f, rets, settings(top_n_per_cluster=1, min_winners=4))
    assert winners(res) == {"A1": "strict", "B1": "strict", "B2": "global_topup", "B3": "global_topup"}
    # scarcity ignores vetoes, never the ceiling: A2 and A3 stay out, three winners instead of five
    f = feats(entropy={"A2": 0.9995, "A3": 0.9999}, kurtosis={s: 30.0 for s in ["B1", "B2", "B3"]})
    res = run(f, rets, settings(top_n_per_cluster=1, min_winners=5))
    assert winners(res) == {"A1": "strict", "B1": "cluster_representative", "B2": "scarcity", "B3": "scarcity"}
    assert not {"A2", "A3"} & set(winners(res))
    # the old name of the setting still loads, and lowering it excludes more
    strict_ceiling = settings(top_n_per_cluster=1, min_winners=4, relaxation={"representative_entropy_max": 0.9})
    res = run(feats(entropy={"B2": 0.92}), rets, strict_ceiling)
    assert "B2" not in winners(res)
