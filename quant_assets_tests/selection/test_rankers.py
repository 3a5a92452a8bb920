"""Ranking helpers: the average ranks the rankers and the hybrid equal weight use, against scipy."""

from __future__ import annotations

import numpy as np

from quant_assets.selection.rankers import average_ranks, prob_map_array


def test_average_ranks_equal_scipys_rankdata_bit_for_bit():
    from scipy.stats import rankdata

    rng = np.random.default_rng(7)
    cases = [
        np.array([]),
        np.array([3.0]),
        np.array([2.0, 2.0, 2.0]),
        np.array([1.0, -np.inf, 5.0, -np.inf, 1.0, np.inf]),
        rng.integers(0, 5, 40).astype(float),  # many ties
        rng.standard_normal(200),
        np.array([0.0, -0.0, 1.0, -0.0]),  # signed zeros tie
        np.array([3, 1, 3, 2]),  # integers
    ]
    for v in cases:
        assert average_ranks(v).tolist() == rankdata(v, method="average").tolist()
    assert average_ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist() == [1.0, 3.5, 2.0, 3.5]


def test_rank_probabilities_spread_ties_and_skip_unknowns():
    # ranks 1, 2.5, 2.5, 4 of the known values -> 0.01 + 0.99 * (r - 1) / 3; NaN -> NAN_PROB (0.01)
    p = prob_map_array(np.array([0.1, 0.5, np.nan, 0.5, 0.9]), "rank")
    tied, top = 0.01 + 0.99 * 1.5 / 3, 0.01 + 0.99 * 3 / 3
    assert p.tolist() == [0.01, tied, 0.01, tied, top]
