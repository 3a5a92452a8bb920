"""Every invariant in quant_assets.audit.checks passes a good input and FAILS on each bad one:
a check that cannot fail is a defect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quant_assets.audit.checks import (
    coverage_problem,
    flattened_problem,
    meta_weights_problem,
    returns_problem,
    sleeve_weights_problem,
)

# --- sleeve weights ----------------------------------------------------------------------------


def _sleeve(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "direction", "weight", "net_weight"])


GOOD_SLEEVE = [("AAA", "LONG", 0.6, 0.6), ("BINANCE:BTC_USDT", "SHORT", 0.4, -0.4)]


def test_sleeve_good_passes():
    assert sleeve_weights_problem(_sleeve(GOOD_SLEEVE)) is None


def test_sleeve_lowercase_direction_passes():
    assert sleeve_weights_problem(_sleeve([("A", "short", 1.0, -1.0)])) is None


def test_sleeve_empty_is_cash_and_passes():
    assert sleeve_weights_problem(_sleeve([])) is None


def test_sleeve_weight_within_tolerance_passes():
    assert sleeve_weights_problem(_sleeve([("A", "LONG", 0.5 + 5e-7, 0.5 + 5e-7), ("B", "LONG", 0.5, 0.5)])) is None


@pytest.mark.parametrize(
    "rows, expected",
    [
        pytest.param([("A", "LONG", np.nan, 0.6), ("B", "LONG", 0.4, 0.4)], "non-finite weights", id="nan-weight"),
        pytest.param([("A", "LONG", 0.6, np.inf), ("B", "LONG", 0.4, 0.4)], "non-finite weights", id="inf-net"),
        pytest.param(
            [("A", "LONG", 1.1, 1.1), ("B", "LONG", -0.1, -0.1)], "negative atom weight -0.1", id="negative-weight"
        ),
        pytest.param(
            [("A", "LONG", 0.6, 0.6), ("B", "LONG", 0.3, 0.3)],
            "atom weights sum to 0.90000000, not 1",
            id="sum-below-1",
        ),
        pytest.param(
            [("A", "LONG", 0.6, 0.6), ("B", "LONG", 0.6, 0.6)],
            "atom weights sum to 1.20000000, not 1",
            id="sum-above-1",
        ),
        pytest.param(
            [("A", "LONG", 0.6, 0.6), ("BINANCE:BTC_USDT", "SHORT", 0.4, 0.4)],
            "net weight sign/size disagrees with direction for ['BINANCE:BTC_USDT']",
            id="short-row-positive-net",
        ),
        pytest.param(
            [("A", "LONG", 0.6, -0.6), ("B", "SHORT", 0.4, -0.4)],
            "net weight sign/size disagrees with direction for ['A']",
            id="long-row-negative-net",
        ),
        pytest.param(
            [("A", "LONG", 0.6, 0.5), ("B", "LONG", 0.4, 0.4)],
            "net weight sign/size disagrees with direction for ['A']",
            id="net-size-wrong",
        ),
    ],
)
def test_sleeve_bad_inputs_fail(rows, expected):
    assert sleeve_weights_problem(_sleeve(rows)) == expected


# --- meta weights -------------------------------------------------------------------------------


def test_meta_good_passes():
    assert meta_weights_problem(pd.Series({"a": 0.5, "b": 0.3, "c": 0.2}), 0.1, 0.6) is None


def test_meta_weights_on_the_bounds_pass():
    assert meta_weights_problem(pd.Series({"a": 0.9, "b": 0.1}), 0.1, 0.9) is None


@pytest.mark.parametrize(
    "weights, lower, upper, expected",
    [
        pytest.param({"a": np.nan, "b": 1.0}, 0.0, 1.0, "non-finite meta weights", id="nan"),
        pytest.param({"a": 0.6, "b": 0.3}, 0.0, 1.0, "meta weights sum to 0.90000000, not 1", id="sum-below-1"),
        pytest.param({"a": 0.7, "b": 0.7}, 0.0, 1.0, "meta weights sum to 1.40000000, not 1", id="sum-above-1"),
        pytest.param({"a": 0.95, "b": 0.05}, 0.1, 0.9, "outside [0.1, 0.9]: b=0.0500, a=0.9500", id="both-bounds"),
        pytest.param({"a": 0.98, "b": 0.02}, 0.0, 0.95, "outside [0.0, 0.95]: a=0.9800", id="above-upper"),
        pytest.param({"a": 1.1, "b": -0.1}, 0.0, 1.0, "outside [0.0, 1.0]: b=-0.1000, a=1.1000", id="negative"),
    ],
)
def test_meta_bad_inputs_fail(weights, lower, upper, expected):
    assert meta_weights_problem(pd.Series(weights), lower, upper) == expected


# --- returns ------------------------------------------------------------------------------------


def test_returns_good_passes_including_bounds():
    assert returns_problem(pd.Series([-1.0, -0.5, 0.0, 0.02, 10.0])) is None
    assert returns_problem(np.array([])) is None


@pytest.mark.parametrize(
    "values, expected",
    [
        pytest.param([0.01, -1.5], "1 returns outside [-1.0, 10.0] (e.g. -1.5)", id="minus-150pct"),
        pytest.param([0.01, 11.0], "1 returns outside [-1.0, 10.0] (e.g. 11)", id="plus-1100pct"),
        pytest.param([-1.5, 0.0, 11.0], "2 returns outside [-1.0, 10.0] (e.g. -1.5)", id="both"),
        pytest.param([0.01, np.inf], "non-finite returns", id="inf"),
        pytest.param([0.01, -np.inf], "non-finite returns", id="minus-inf"),
        pytest.param([0.01, np.nan], "non-finite returns", id="nan"),
    ],
)
def test_returns_bad_inputs_fail(values, expected):
    assert returns_problem(pd.Series(values)) == expected
    assert returns_problem(np.asarray(values)) == expected


def test_returns_label_in_message():
    assert returns_problem([np.inf], label="net_return") == "non-finite net_returns"


# --- flattened weights ------------------------------------------------------------------------


def _flat(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "net_weight", "long_weight", "short_weight"])


def _contrib(values) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"p{i}" for i in range(len(values))], "contribution": values})


PHYSICAL = {"AAA", "BBB", "BINANCE:BTC_USDT"}
GOOD_FLAT = [("AAA", 0.3, 0.5, 0.2), ("BINANCE:BTC_USDT", -0.1, 0.0, 0.1)]
GOOD_CONTRIB = [0.5, -0.2, -0.1]  # sums to 0.2 = sum of net weights


def test_flattened_good_passes():
    assert flattened_problem(_flat(GOOD_FLAT), _contrib(GOOD_CONTRIB), PHYSICAL) is None


def test_flattened_empty_passes():
    assert flattened_problem(_flat([]), _contrib([]), PHYSICAL) is None


def test_flattened_symbol_missing_from_physical_set_fails():
    flat = _flat(GOOD_FLAT + [("BTC_USDT", 0.0, 0.0, 0.0)])  # an atom-ish name, not a physical symbol
    assert flattened_problem(flat, _contrib(GOOD_CONTRIB), PHYSICAL) == "symbols not in prices: ['BTC_USDT']"


def test_flattened_non_finite_fails():
    flat = _flat([("AAA", np.nan, 0.5, 0.2), ("BBB", 0.0, 0.0, 0.0)])
    assert flattened_problem(flat, _contrib(GOOD_CONTRIB), PHYSICAL) == "non-finite flattened weights"


def test_flattened_net_not_long_minus_short_fails():
    flat = _flat([("AAA", 0.4, 0.5, 0.2), ("BINANCE:BTC_USDT", -0.1, 0.0, 0.1)])
    assert flattened_problem(flat, _contrib([0.3]), PHYSICAL) == "net != long - short by 0.1"


def test_flattened_contributions_not_conserved_fails():
    assert (
        flattened_problem(_flat(GOOD_FLAT), _contrib([0.5, -0.2, -0.05]), PHYSICAL)
        == "sum of path contributions differs from sum of net weights by 0.05"
    )


def test_flattened_empty_flat_with_nonzero_contributions_fails():
    assert flattened_problem(_flat([]), _contrib([0.5]), PHYSICAL) is not None


# --- coverage ---------------------------------------------------------------------------------


def test_coverage_good_passes():
    assert coverage_problem(0.75, 0.5) is None
    assert coverage_problem(0.5, 0.5) is None  # at the threshold


def test_coverage_below_threshold_fails():
    assert coverage_problem(0.4, 0.5) == "health coverage 40.00% below 50%"
    assert coverage_problem(0.0, 0.75) == "health coverage 0.00% below 75%"


def test_coverage_nan_means_nothing_to_judge():
    assert coverage_problem(math.nan, 0.5) is None


# ---- directional sign test and conservation ---------------------------------------------------

from quant_assets.audit.checks import sign_problem, synthetic_stream_problem  # noqa: E402


def _paths(rows):
    return pd.DataFrame(
        rows,
        columns=["symbol", "path", "sleeve", "atom_id", "direction", "path_weight", "sleeve_weight", "contribution"],
    )


def test_sign_test_passes_a_consistent_tree_and_catches_lost_directions():
    good = _paths(
        [
            ("X", "m/s", "s", "X|trend|short", "SHORT", 0.5, 1.0, -0.5),
            ("Y", "m/l", "l", "Y|trend|long", "LONG", 0.5, 1.0, 0.5),
        ]
    )
    assert sign_problem(good, {"s": "short", "l": "long"}) is None
    lost = good.assign(direction=["LONG", "LONG"], contribution=[0.5, 0.5])  # a short sleeve emitting longs
    assert sign_problem(lost, {"s": "short", "l": "long"}) == "m/s: atom X|trend|short is LONG but sleeve s is SHORT"
    flipped = good.assign(contribution=[0.5, 0.5])
    assert (
        sign_problem(flipped, {"s": "short", "l": "long"}) == "m/s: SHORT atom X|trend|short has contribution +0.500000"
    )


def test_synthetic_stream_test_is_exact():
    raw = pd.DataFrame({"a": [0.02, -0.5, 3.0]})
    assert synthetic_stream_problem(-raw.clip(upper=1.0), raw, "short") is None
    assert synthetic_stream_problem(raw, raw, "long") is None
    assert synthetic_stream_problem(-raw, raw, "short") == "short synthetic streams are not -min(r, 1)"
    assert synthetic_stream_problem(-raw.clip(upper=1.0) + 1e-15, raw, "short") is not None  # atol 0


def test_conservation_counts_netted_away_gross():
    contributions = _paths(
        [("X", "m/l", "l", "X|t|long", "LONG", 0.6, 0.5, 0.3), ("X", "m/s", "s", "X|t|short", "SHORT", 0.4, 0.25, -0.1)]
    )
    flat = pd.DataFrame({"symbol": ["X"], "net_weight": [0.2], "long_weight": [0.3], "short_weight": [0.1]})
    assert flattened_problem(flat, contributions, {"X"}) is None  # 0.4 gross = 0.2 net + 0.2 netted away
    wrong = flat.assign(long_weight=[0.35], short_weight=[0.15], net_weight=[0.2])
    assert "path gross != net gross + netted-away gross" in flattened_problem(wrong, contributions, {"X"})
