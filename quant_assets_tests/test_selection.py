"""Selection funnel: direction-aware ranking (domain-spec §10.2), clusters, vetoes, relaxation,
and atom ids that never need parsing (§10.27)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.manifest import Selection, Sleeve
from quant_assets.selection import (
    SELECTION_COLUMNS,
    atom_id,
    correlation_clusters,
    select,
    sleeve_score,
)

N = 120
SYMBOLS = ["A1", "A2", "A3", "B1", "B2", "B3"]


@pytest.fixture(scope="module")
def block_returns() -> pd.DataFrame:
    """Two blocks of perfectly correlated assets; the blocks have sample correlation exactly 0."""
    f1 = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], N // 4)
    f2 = 0.01 * np.tile([1.0, 1.0, -1.0, -1.0], N // 4)
    idx = pd.bdate_range("2024-01-01", periods=N)
    return pd.DataFrame({"A1": f1, "A2": 2 * f1, "A3": 3 * f1, "B1": f2, "B2": 0.5 * f2, "B3": 1.5 * f2}, index=idx)


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
    base = pd.DataFrame(
        {
            "momentum": [0.06, 0.05, 0.04, 0.03, -0.02, -0.07],
            "entropy": [0.5] * 6,
            "efficiency": [0.3] * 6,
            "return_20d": [0.01, -0.04, 0.08, -0.02, 0.03, -0.09],
        },
        index=SYMBOLS,
    )
    for col, values in overrides.items():
        for sym, v in values.items():
            base.loc[sym, col] = v
    return base


def _sleeve(direction="long", logic="trend", **sel) -> Sleeve:
    params = {"top_n_per_cluster": 3, "max_winners": 8, "min_winners": 1} | sel
    return Sleeve(universe="u", logic=logic, direction=direction, selection=Selection(**params))


def _winners(out: pd.DataFrame) -> dict[str, str]:
    return dict(zip(out.loc[out["selected"], "symbol"], out.loc[out["selected"], "selected_by"]))


# --- clusters ---------------------------------------------------------------------------------


def test_correlation_clusters_two_factor_blocks(factor_returns):
    labels = correlation_clusters(factor_returns, 0.5)
    assert labels.nunique() == 2
    assert labels["X0"] == labels["X1"] == labels["X2"]
    assert labels["Y0"] == labels["Y1"] == labels["Y2"]
    assert labels["X0"] != labels["Y0"]
    assert sorted(labels.unique().tolist()) == [1, 2]


def test_correlation_clusters_threshold_above_block_merge_gives_one(factor_returns):
    # Ward merge height of the two blocks is ~1.16 (> 1.0 = the highest allowed threshold); a cut at
    # 0.1 is below the within-block heights (~0.2), so every asset is its own cluster
    assert correlation_clusters(factor_returns, 0.1).nunique() == 6
    assert correlation_clusters(factor_returns, 1.0).nunique() == 2


def test_correlation_clusters_perfect_blocks(block_returns):
    labels = correlation_clusters(block_returns, 0.5)
    assert labels.tolist() == [1, 1, 1, 2, 2, 2]


def test_correlation_clusters_single_asset(block_returns):
    assert correlation_clusters(block_returns[["A1"]], 0.5).tolist() == [1]


# --- direction-aware ranking (§10.2) ------------------------------------------------------------


def test_long_trend_ranks_highest_momentum_first(block_returns):
    out = select(_features(), block_returns, _sleeve("long"))
    assert list(out.columns) == SELECTION_COLUMNS
    assert out["symbol"].tolist() == ["A1", "A2", "A3", "B1", "B2", "B3"]
    assert out["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert set(out["direction"]) == {"LONG"}
    np.testing.assert_allclose(out["score"].to_numpy(), [0.06, 0.05, 0.04, 0.03, -0.02, -0.07])


def test_short_trend_ranks_most_negative_momentum_first(block_returns):
    out = select(_features(), block_returns, _sleeve("short"))
    assert out["symbol"].tolist() == ["B3", "B2", "B1", "A3", "A2", "A1"]
    assert out["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert set(out["direction"]) == {"SHORT"}  # never a LONG row in a short sleeve (§10.9)
    np.testing.assert_allclose(out["score"].to_numpy(), [0.07, 0.02, -0.03, -0.04, -0.05, -0.06])


def test_reversion_long_buys_biggest_losers_short_sells_biggest_winners(block_returns):
    long_out = select(_features(), block_returns, _sleeve("long", logic="reversion"))
    assert long_out["symbol"].tolist() == ["B3", "A2", "B1", "A1", "B2", "A3"]
    short_out = select(_features(), block_returns, _sleeve("short", logic="reversion"))
    assert short_out["symbol"].tolist() == ["A3", "B2", "A1", "B1", "A2", "B3"]


def test_sleeve_score_sign():
    feats = _features()
    pd.testing.assert_series_equal(sleeve_score(feats, _sleeve("short")), -feats["momentum"])
    pd.testing.assert_series_equal(sleeve_score(feats, _sleeve("long")), feats["momentum"])


# --- vetoes -----------------------------------------------------------------------------------


def test_entropy_and_efficiency_vetoes_with_reason(block_returns):
    feats = _features(entropy={"A2": 0.95}, efficiency={"B1": 0.05})
    out = select(feats, block_returns, _sleeve("long", entropy_max=0.9, efficiency_min=0.1,
                                               top_n_per_cluster=3, min_winners=1)).set_index("symbol")
    assert out.loc["A2", "veto_reason"] == "entropy_above_max"
    assert out.loc["B1", "veto_reason"] == "efficiency_below_min"
    assert out["vetoed"].to_dict() == {"A1": False, "A2": True, "A3": False, "B1": True, "B2": False, "B3": False}
    assert out.loc[["A1", "A3", "B2", "B3"], "veto_reason"].tolist() == ["", "", "", ""]
    assert out.loc[out["selected"]].index.tolist() == ["A1", "A3", "B2", "B3"]
    assert set(out.loc[out["selected"], "selected_by"]) == {"cluster_top_n"}


def test_veto_thresholds_are_strict(block_returns):
    feats = _features(entropy={"A1": 0.9}, efficiency={"A2": 0.1})  # exactly on the limits
    out = select(feats, block_returns, _sleeve("long", entropy_max=0.9, efficiency_min=0.1))
    assert not out["vetoed"].any()


def test_missing_feature_vetoed_and_ranked_last(block_returns):
    feats = _features(momentum={"A1": np.nan}, entropy={"B2": np.nan})
    out = select(feats, block_returns, _sleeve("long", min_winners=6)).set_index("symbol")
    assert out.index.tolist()[-1] == "A1"
    assert out.loc["A1", "rank"] == 6
    assert out.loc["A1", "veto_reason"] == "missing_features"
    assert out.loc["B2", "veto_reason"] == "missing_features"
    # even the veto relaxation never picks a symbol without a score
    assert not out.loc["A1", "selected"]
    assert out.loc["B2", "selected_by"] == "relaxed_veto"
    assert out["selected"].sum() == 5


# --- cluster cap and winners -----------------------------------------------------------------------


def test_top_n_per_cluster_one(block_returns):
    out = select(_features(), block_returns, _sleeve("long", top_n_per_cluster=1))
    assert _winners(out) == {"A1": "cluster_top_n", "B1": "cluster_top_n"}
    assert out.set_index("symbol")["cluster"].to_dict() == {"A1": 1, "A2": 1, "A3": 1, "B1": 2, "B2": 2, "B3": 2}


def test_top_n_per_cluster_two(block_returns):
    out = select(_features(), block_returns, _sleeve("long", top_n_per_cluster=2))
    assert _winners(out) == {"A1": "cluster_top_n", "A2": "cluster_top_n",
                             "B1": "cluster_top_n", "B2": "cluster_top_n"}


def test_top_n_per_cluster_short_picks_most_bearish_per_cluster(block_returns):
    out = select(_features(), block_returns, _sleeve("short", top_n_per_cluster=1))
    assert _winners(out) == {"B3": "cluster_top_n", "A3": "cluster_top_n"}


def test_max_winners_caps_stage_one(block_returns):
    out = select(_features(), block_returns, _sleeve("long", top_n_per_cluster=2, max_winners=3))
    assert _winners(out) == {"A1": "cluster_top_n", "A2": "cluster_top_n", "B1": "cluster_top_n"}


def test_relaxation_cluster_cap_then_veto(block_returns):
    feats = _features(entropy={"A2": 0.99, "B3": 0.99}, efficiency={"B2": 0.01})
    sleeve = _sleeve("long", top_n_per_cluster=1, min_winners=5, entropy_max=0.9, efficiency_min=0.1)
    out = select(feats, block_returns, sleeve)
    assert _winners(out) == {
        "A1": "cluster_top_n",
        "B1": "cluster_top_n",
        "A3": "relaxed_cluster_cap",  # best eligible name left after the cap
        "A2": "relaxed_veto",  # then the global ranking, vetoes ignored
        "B2": "relaxed_veto",
    }
    assert out.set_index("symbol").loc["B3", "selected"] == np.False_


def test_relaxation_cluster_cap_only(block_returns):
    out = select(_features(), block_returns, _sleeve("long", top_n_per_cluster=1, min_winners=3))
    assert _winners(out) == {"A1": "cluster_top_n", "B1": "cluster_top_n", "A2": "relaxed_cluster_cap"}


def test_min_winners_above_universe_selects_everyone(block_returns):
    out = select(_features(), block_returns.iloc[:, :2], _sleeve("long", top_n_per_cluster=1,
                                                                 min_winners=8, max_winners=8))
    assert out["symbol"].tolist() == ["A1", "A2"]
    assert _winners(out) == {"A1": "cluster_top_n", "A2": "relaxed_cluster_cap"}


def test_symbols_without_returns_are_dropped(block_returns):
    feats = pd.concat([_features(), pd.DataFrame({"momentum": [1.0], "entropy": [0.5], "efficiency": [0.3],
                                                  "return_20d": [0.0]}, index=["GHOST"])])
    out = select(feats, block_returns, _sleeve("long"))
    assert "GHOST" not in out["symbol"].tolist()
    assert len(out) == 6


def test_no_overlap_gives_empty_frame(block_returns):
    out = select(_features().rename(index=lambda s: s + "_X"), block_returns, _sleeve("long"))
    assert out.empty
    assert list(out.columns) == SELECTION_COLUMNS


# --- atom ids (§10.27) ---------------------------------------------------------------------------


def test_atom_id_format():
    assert atom_id("BINANCE:BTC_USDT", "trend", "SHORT") == "BINANCE:BTC_USDT|trend|short"
    assert atom_id("AAPL", "reversion", "long") == "AAPL|reversion|long"


def test_atom_id_symbol_with_underscore_and_colon_travels_intact(block_returns):
    odd = ["BINANCE:BTC_USDT", "BINANCE:BTC_USDC", "NYSE:BRK_B", "BTC", "A_", "_A"]
    rets = block_returns.set_axis(odd, axis=1)
    feats = _features().set_axis(odd, axis=0)
    out = select(feats, rets, _sleeve("short", top_n_per_cluster=3))
    assert sorted(out["symbol"]) == sorted(odd)  # the symbol column is exactly the input symbol
    ids = {atom_id(s, "trend", d) for s, d in zip(out["symbol"], out["direction"])}
    assert len(ids) == len(odd)  # no two symbols collapse onto one id
    # the id -> symbol map is built from the columns, never by splitting the id
    lookup = {atom_id(s, "trend", d): s for s, d in zip(out["symbol"], out["direction"])}
    assert lookup["BINANCE:BTC_USDT|trend|short"] == "BINANCE:BTC_USDT"
    assert lookup["NYSE:BRK_B|trend|short"] == "NYSE:BRK_B"
    # the §10.27 "first underscore" parse would have merged BTC_USDT and BTC_USDC
    assert len({i.split("_")[0] for i in ids}) < len(ids)
    for s in odd:
        assert atom_id(s, "trend", "short").startswith(s + "|")
