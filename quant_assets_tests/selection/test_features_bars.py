"""Features of a universe whose source brings bars: OHLC votes join the oscillator rating, ADX and
value traded come from highs, lows and volumes; closes-only universes keep their numbers."""

import numpy as np

from quant_assets.selection.features import FEATURE_COLUMNS, features_of_windows, technical_ratings_matrix
from quant_assets.selection.ohlc import OHLC_VOTE_KEYS, adx_rows, average_value_traded, ohlc_votes

COL = {c: i for i, c in enumerate(FEATURE_COLUMNS)}


def panel(m=4, n=260, seed=3):
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0005, 0.02, size=(m, n))
    close = 100 * np.cumprod(1 + r, axis=1)
    high = close * (1 + rng.uniform(0, 0.02, size=(m, n)))
    low = close * (1 - rng.uniform(0, 0.02, size=(m, n)))
    volume = rng.uniform(1e5, 1e6, size=(m, n))
    return r, (high, low, close, volume)


def test_bars_add_adx_value_traded_and_the_ohlc_votes():
    r, (h, low, c, v) = panel()
    plain = features_of_windows([r], window=120)[0]
    with_bars = features_of_windows([r], window=120, bars=[(h, low, c, v)], liquidity_baseline=1e7)[0]
    np.testing.assert_allclose(with_bars[:, COL["adx"]], adx_rows(h, low, c)[0], rtol=0, atol=0)
    adv = average_value_traded(c, v, 20)
    np.testing.assert_allclose(with_bars[:, COL["adv"]], adv, rtol=0, atol=0)
    np.testing.assert_allclose(with_bars[:, COL["liquidity"]], np.minimum(1.0, adv / 1e7))
    # the oscillator rating: the close-only votes and the five OHLC votes, one mean
    votes = ohlc_votes(h, low, c)
    _, osc_close, _ = technical_ratings_matrix(r.T)
    n_close = 4  # RSI, Stoch RSI, momentum, MACD on 261 points
    expected = (osc_close * n_close + sum(votes[k] for k in OHLC_VOTE_KEYS)) / (n_close + len(OHLC_VOTE_KEYS))
    np.testing.assert_allclose(with_bars[:, COL["rating_osc"]], expected, rtol=0, atol=1e-15)
    assert np.all(np.abs(with_bars[:, COL["rating_osc"]]) <= 1)
    # everything that reads closes only is unchanged
    same = [c for c in FEATURE_COLUMNS if c not in ("adx", "adv", "liquidity", "rating_osc", "rating_all")]
    np.testing.assert_array_equal(with_bars[:, [COL[c] for c in same]], plain[:, [COL[c] for c in same]])
    assert np.isnan(plain[:, [COL["adx"], COL["adv"], COL["liquidity"]]]).all()


def test_a_symbol_without_highs_keeps_the_close_only_rating():
    r, (h, low, c, v) = panel()
    h = h.copy()
    h[1, 10] = np.nan  # one missing high in symbol 1's window
    plain = features_of_windows([r], window=120)[0]
    mixed = features_of_windows([r], window=120, bars=[(h, low, c, v)])[0]
    assert np.isnan(mixed[1, COL["adx"]]) and np.isfinite(mixed[0, COL["adx"]])
    assert mixed[1, COL["rating_osc"]] == plain[1, COL["rating_osc"]]
    assert np.isfinite(mixed[1, COL["adv"]])  # volumes and closes are complete: value traded is known


def test_stacked_blocks_with_and_without_bars_match_their_single_calls():
    r, bars = panel()
    r2, _ = panel(seed=9)
    together = features_of_windows([r, r2], window=120, bars=[bars, None])
    np.testing.assert_array_equal(together[0], features_of_windows([r], window=120, bars=[bars])[0])
    np.testing.assert_array_equal(together[1], features_of_windows([r2], window=120)[0])
