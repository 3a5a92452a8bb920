"""Exact-value tests for quant_assets.selection.ohlc.

Every indicator is cross-checked against an independent pandas implementation written here
(rolling windows, Wilder's RMA as an ewm with alpha = 1/length, adjust=False, seeded with the
simple mean of its first `length` inputs), at many end sessions of a seeded random OHLC panel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.selection.ohlc import (
    OHLC_VOTE_KEYS,
    adx_rows,
    average_value_traded,
    cci_rows,
    donchian_rows,
    ohlc_votes,
    stochastic_rows,
    williams_r_rows,
)

M, N = 5, 300
ENDS = [*range(1, 61), *range(61, N, 3), N]  # every end up to 60 (all the minimum lengths), then every 3rd
TOL = 1e-9
MIN_SESSIONS = {"vote_stoch": 18, "vote_cci": 21, "vote_adx": 28, "vote_williams_r": 14, "vote_donchian": 21}


def _panel(m: int = M, n: int = N, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Consistent bars (L <= O, C <= H) around a geometric random walk, plus volumes."""
    rng = np.random.default_rng(seed)
    C = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (m, n)), axis=1))
    opens = np.concatenate([C[:, :1], C[:, :-1]], axis=1) * (1.0 + rng.normal(0.0, 0.003, (m, n)))
    H = np.maximum(opens, C) * (1.0 + np.abs(rng.normal(0.0, 0.01, (m, n))))
    L = np.minimum(opens, C) * (1.0 - np.abs(rng.normal(0.0, 0.01, (m, n))))
    V = rng.lognormal(10.0, 1.0, (m, n))
    return H, L, C, V


# --- independent pandas reference ------------------------------------------------------------


def _pd_rma(s: pd.Series, length: int) -> pd.Series:
    """TradingView ta.rma: SMA of the first `length` defined inputs, then alpha = 1/length."""
    out = pd.Series(np.nan, index=s.index)
    valid = s.dropna()
    if len(valid) < length:
        return out
    tail = valid.iloc[length - 1 :].copy()
    tail.iloc[0] = valid.iloc[:length].mean()
    out.loc[tail.index] = tail.ewm(alpha=1.0 / length, adjust=False).mean()
    return out


def _pd_indicators(h: pd.Series, l: pd.Series, c: pd.Series, v: pd.Series) -> pd.DataFrame:  # noqa: E741
    up, down = h.diff(), -l.diff()
    plus_dm = pd.Series(np.where((up > down) & (up > 0), up, 0.0), index=h.index).where(up.notna())
    minus_dm = pd.Series(np.where((down > up) & (down > 0), down, 0.0), index=h.index).where(down.notna())
    prev = c.shift(1)
    tr = pd.concat([h - l, (h - prev).abs(), (l - prev).abs()], axis=1).max(axis=1).where(prev.notna())
    atr = _pd_rma(tr, 14)
    dip, dim = 100.0 * _pd_rma(plus_dm, 14) / atr, 100.0 * _pd_rma(minus_dm, 14) / atr
    total = dip + dim
    dx = 100.0 * (dip - dim).abs() / total.where(total != 0, 1.0)
    adx = _pd_rma(dx, 14)

    hh14, ll14 = h.rolling(14).max(), l.rolling(14).min()
    k = (100.0 * (c - ll14) / (hh14 - ll14)).rolling(3).mean()
    d = k.rolling(3).mean()
    wr = -100.0 * (hh14 - c) / (hh14 - ll14)

    tp = (h + l + c) / 3.0
    mad = tp.rolling(20).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)
    cci = (tp - tp.rolling(20).mean()) / (0.015 * mad)

    upper, lower = h.rolling(20).max().shift(1), l.rolling(20).min().shift(1)
    adv = (c * v).rolling(20, min_periods=1).mean()
    return pd.DataFrame(
        {
            "adx": adx,
            "di_plus": dip,
            "di_minus": dim,
            "k": k,
            "d": d,
            "wr": wr,
            "cci": cci,
            "upper": upper,
            "lower": lower,
            "adv": adv,
            "close": c,
        }
    )


def _pd_votes(ref: pd.DataFrame) -> pd.DataFrame:
    def vote(buy, sell, defined):
        return pd.Series(np.where(buy, 1.0, np.where(sell, -1.0, 0.0)), index=ref.index).where(defined)

    k, d, cci, adx, wr, c = ref["k"], ref["d"], ref["cci"], ref["adx"], ref["wr"], ref["close"]
    sess = pd.Series(np.arange(1, len(ref) + 1), index=ref.index)
    prev_cci = cci.shift(1)
    di_diff = ref["di_plus"] - ref["di_minus"]
    up, down = c >= 0.995 * ref["upper"], c <= 1.005 * ref["lower"]
    return pd.DataFrame(
        {
            "vote_stoch": vote((k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d), sess >= 18),
            "vote_cci": vote((cci < -100) & (cci > prev_cci), (cci > 100) & (cci < prev_cci), sess >= 21),
            "vote_adx": vote((adx > 20) & (di_diff > 0), (adx > 20) & (di_diff < 0), adx.notna()),
            "vote_williams_r": vote(wr < -80, wr > -20, sess >= 14),
            "vote_donchian": vote(up & ~down, down & ~up, sess >= 21),
        }
    )


@pytest.fixture(scope="module")
def panel():
    H, L, C, V = _panel()
    frames = []
    for i in range(M):
        ref = _pd_indicators(*(pd.Series(a[i]) for a in (H, L, C, V)))
        frames.append(pd.concat([ref, _pd_votes(ref)], axis=1))
    refs = {col: np.stack([f[col].to_numpy() for f in frames]) for col in frames[0].columns}  # (M, N) each
    return H, L, C, V, refs


def _close(actual, expected, col: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0.0, atol=TOL, equal_nan=True, err_msg=col)


# --- cross-checks against pandas ---------------------------------------------------------------


def test_indicators_match_pandas(panel):
    H, L, C, V, refs = panel
    cols = ("adx", "di_plus", "di_minus", "k", "d", "wr", "cci", "upper", "lower", "adv")
    got = {col: np.full((M, len(ENDS)), np.nan) for col in cols}
    for j, end in enumerate(ENDS):
        h, l, c, v = H[:, :end], L[:, :end], C[:, :end], V[:, :end]  # noqa: E741
        values = (
            *adx_rows(h, l, c),
            *stochastic_rows(h, l, c),
            williams_r_rows(h, l, c),
            cci_rows(h, l, c),
            *donchian_rows(h, l),
            average_value_traded(c, v),
        )
        for col, x in zip(cols, values, strict=True):
            got[col][:, j] = x
    at = np.asarray(ENDS) - 1
    for col in cols:
        expected = refs[col][:, at]
        if col in ("di_plus", "di_minus"):
            # the DIs exist from session 14 on, but adx_rows reports them with ADX (28 sessions)
            expected = np.where(at < 27, np.nan, expected)
        if col == "adv":
            np.testing.assert_allclose(got[col], expected, rtol=1e-12, err_msg=col)
        else:
            _close(got[col], expected, col)
        assert np.isfinite(got[col][:, -1]).all()


def test_votes_match_pandas(panel):
    H, L, C, _, refs = panel
    got = {key: np.full((M, len(ENDS)), np.nan) for key in (*OHLC_VOTE_KEYS, "adx")}
    for j, end in enumerate(ENDS):
        votes = ohlc_votes(H[:, :end], L[:, :end], C[:, :end])
        assert set(votes) == set(got)
        for key, x in votes.items():
            got[key][:, j] = x
    at = np.asarray(ENDS) - 1
    _close(got["adx"], refs["adx"][:, at], "adx")
    for key in OHLC_VOTE_KEYS:
        np.testing.assert_array_equal(got[key], refs[key][:, at], err_msg=key)
        # the panel exercises both directions of every rule
        assert set(np.unique(got[key][~np.isnan(got[key])])) == {-1.0, 0.0, 1.0}, key


# --- golden values -------------------------------------------------------------------------------

# 5 bars: H, L, C
H5 = np.array([[3.0, 5.0, 4.0, 6.0, 5.0]])
L5 = np.array([[1.0, 2.0, 2.0, 3.0, 4.0]])
C5 = np.array([[2.0, 4.0, 3.0, 5.0, 4.5]])


def test_williams_r_golden():
    assert williams_r_rows(H5, L5, C5, length=5)[0] == -30.0  # HH 6, LL 1: -100 * 1.5 / 5
    assert williams_r_rows(H5, L5, C5, length=3)[0] == -37.5  # HH 6, LL 2: -100 * 1.5 / 4
    assert np.isnan(williams_r_rows(H5, L5, C5, length=6)[0])


def test_donchian_golden_excludes_last_session():
    assert donchian_rows(H5, L5, length=3) == (np.array([6.0]), np.array([2.0]))  # bars 1..3
    assert donchian_rows(H5, L5, length=4) == (np.array([6.0]), np.array([1.0]))  # bars 0..3
    upper, lower = donchian_rows(H5, L5, length=5)  # needs 6 sessions
    assert np.isnan(upper[0]) and np.isnan(lower[0])


def test_stochastic_golden():
    # raw %K(3) at bars 2, 3, 4: 100 * (3-1)/(5-1) = 50, 100 * (5-2)/(6-2) = 75, 100 * 2.5/4 = 62.5
    # %K(2) at bars 3, 4: 62.5, 68.75; %D(2) = 65.625
    k, d = stochastic_rows(H5, L5, C5, k=3, smooth_k=2, d=2)
    assert k[0] == 68.75 and d[0] == 65.625
    k, d = stochastic_rows(H5[:, :4], L5[:, :4], C5[:, :4], k=3, smooth_k=2, d=2)  # %K from 4 bars, %D from 5
    assert k[0] == 62.5 and np.isnan(d[0])
    k, d = stochastic_rows(H5[:, :3], L5[:, :3], C5[:, :3], k=3, smooth_k=2, d=2)
    assert np.isnan(k[0]) and np.isnan(d[0])


def test_cci_golden():
    c = np.array([[1.0, 2.0, 3.0]])
    # TP = C; mean 2, MAD 2/3: (3 - 2) / (0.015 * 2/3) = 100
    assert cci_rows(c + 1.0, c - 1.0, c, length=3)[0] == pytest.approx(100.0, abs=1e-12)
    # TP = (H + L + C) / 3 = 4, 1, 2: mean 7/3, MAD 10/9: (2 - 7/3) / (0.015 * 10/9) = -20
    h, l, c = np.array([[5.0, 2.0, 3.0]]), np.array([[3.0, 0.0, 1.0]]), np.array([[4.0, 1.0, 2.0]])  # noqa: E741
    assert cci_rows(h, l, c, length=3)[0] == pytest.approx(-20.0, abs=1e-12)
    assert np.isnan(cci_rows(h[:, :2], l[:, :2], c[:, :2], length=3)[0])


def test_adx_golden_length_2():
    H = np.array([[10.0, 12.0, 11.0, 13.0]])
    L = np.array([[9.0, 10.0, 9.0, 11.0]])
    C = np.array([[9.5, 11.0, 10.0, 12.0]])
    # +DM 2, 0, 2; -DM 0, 1, 0; TR 2.5, 2, 3. RMA(2) seeds at bar 2: ATR 2.25, +DM 1, -DM 0.5
    # -> DX 100/3; bar 3: ATR 2.625, +DM 1.5, -DM 0.25 -> DI+ 400/7, DI- 200/21, DX 500/7
    adx, dip, dim = adx_rows(H, L, C, length=2)
    assert adx[0] == pytest.approx(1100.0 / 21.0, abs=1e-12)
    assert dip[0] == pytest.approx(400.0 / 7.0, abs=1e-12)
    assert dim[0] == pytest.approx(200.0 / 21.0, abs=1e-12)
    assert all(np.isnan(x[0]) for x in adx_rows(H[:, :3], L[:, :3], C[:, :3], length=2))


def _ramp(step: float, n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = (100.0 + step * np.arange(n))[None, :]
    return c + 0.5, c - 0.5, c


def test_rising_and_falling_trends():
    H, L, C = _ramp(1.0)
    adx, dip, dim = adx_rows(H, L, C)
    # +DM 1 and TR 1.5 on every bar: DI+ 200/3, DI- 0, DX = ADX = 100
    assert adx[0] == pytest.approx(100.0) and dip[0] == pytest.approx(200.0 / 3.0) and dim[0] == 0.0
    votes = ohlc_votes(H, L, C)
    # CCI of a linear ramp of 20: 9.5 / (0.015 * 5) = 126.67 on every bar: above 100 but not falling
    assert cci_rows(H, L, C)[0] == pytest.approx(9.5 / 0.075)
    assert williams_r_rows(H, L, C)[0] == pytest.approx(-100.0 * 0.5 / 14.0)
    expected = {"vote_adx": 1.0, "vote_donchian": 1.0, "vote_williams_r": -1.0, "vote_stoch": 0.0, "vote_cci": 0.0}
    assert {k: votes[k][0] for k in OHLC_VOTE_KEYS} == expected
    assert votes["adx"][0] == pytest.approx(100.0)

    H, L, C = _ramp(-1.0)
    adx, dip, dim = adx_rows(H, L, C)
    assert adx[0] == pytest.approx(100.0) and dim[0] == pytest.approx(200.0 / 3.0) and dip[0] == 0.0
    votes = ohlc_votes(H, L, C)
    assert cci_rows(H, L, C)[0] == pytest.approx(-9.5 / 0.075)
    expected = {"vote_adx": -1.0, "vote_donchian": -1.0, "vote_williams_r": 1.0, "vote_stoch": 0.0, "vote_cci": 0.0}
    assert {k: votes[k][0] for k in OHLC_VOTE_KEYS} == expected


def _cci_case(path: list[float]) -> tuple[float, float, float]:
    """(previous CCI, last CCI, CCI vote) after 15 flat sessions at 100 followed by ``path``."""
    c = np.r_[np.full(15, 100.0), path][None, :]
    h, lo = c + 0.5, c - 0.5
    prev, last = cci_rows(h[:, :-1], lo[:, :-1], c[:, :-1])[0], cci_rows(h, lo, c)[0]
    return prev, last, ohlc_votes(h, lo, c)["vote_cci"][0]


def test_cci_vote_needs_a_turn():
    # a steady fall: CCI deep below -100 but rising back (-251.9 -> -223.7) -> buy
    prev, last, vote = _cci_case([98.0, 96.0, 94.0, 92.0, 90.0, 88.0])
    assert last < -100 and last > prev and vote == 1.0
    # the fall accelerating: below -100 and still falling (-251.9 -> -328.6) -> no buy
    prev, last, vote = _cci_case([98.0, 96.0, 94.0, 92.0, 90.0, 80.0])
    assert last < prev < -100 and vote == 0.0
    # mirror images for the sell side
    prev, last, vote = _cci_case([102.0, 104.0, 106.0, 108.0, 110.0, 112.0])
    assert 100 < last < prev and vote == -1.0
    prev, last, vote = _cci_case([102.0, 104.0, 106.0, 108.0, 110.0, 120.0])
    assert last > prev > 100 and vote == 0.0


@pytest.mark.filterwarnings("error")
def test_flat_series_without_division_by_zero():
    H = L = C = np.full((2, 40), 0.1)  # 0.1: the mean of equal values is not exactly 0.1 in floats
    assert (cci_rows(H, L, C) == 0.0).all()
    assert all((x == 0.0).all() for x in adx_rows(H, L, C))
    assert np.isnan(williams_r_rows(H, L, C)).all()
    assert all(np.isnan(x).all() for x in stochastic_rows(H, L, C))
    votes = ohlc_votes(H, L, C)
    assert all((votes[k] == 0.0).all() for k in OHLC_VOTE_KEYS)
    assert (votes["adx"] == 0.0).all()


def test_average_value_traded():
    C = np.array([[10.0, 10.0, 20.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [5.0, 5.0, 5.0]])
    V = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [7.0, np.nan, 1.0], [4.0, 0.0, 0.0]])
    adv = average_value_traded(C, V)  # 3 sessions < 20: all of them
    assert adv[0] == 30.0 and np.isnan(adv[1]) and np.isnan(adv[2]) and adv[3] == 20.0 / 3.0
    adv = average_value_traded(C, V, sessions=2)
    assert adv[0] == 40.0 and np.isnan(adv[1]) and np.isnan(adv[2]) and np.isnan(adv[3])
    assert average_value_traded(np.zeros((2, 0)), np.zeros((2, 0))).shape == (2,)


# --- bounds, short history, row independence -----------------------------------------------------


def test_bounds(panel):
    H, L, C, _, _ = panel
    for end in (30, 100, N):
        h, l, c = H[:, :end], L[:, :end], C[:, :end]  # noqa: E741
        for x in (*adx_rows(h, l, c), *stochastic_rows(h, l, c)):
            assert ((x >= 0) & (x <= 100)).all()
        wr = williams_r_rows(h, l, c)
        assert ((wr >= -100) & (wr <= 0)).all()
        upper, lower = donchian_rows(h, l)
        assert (upper >= lower).all()
        votes = ohlc_votes(h, l, c)
        for key in OHLC_VOTE_KEYS:
            assert np.isin(votes[key], (-1.0, 0.0, 1.0)).all()


def test_too_short_history_is_nan(panel):
    H, L, C, _, _ = panel
    needs = {
        "adx": (28, lambda hi, lo, c: adx_rows(hi, lo, c)),
        "stoch_k": (16, lambda hi, lo, c: stochastic_rows(hi, lo, c)[:1]),
        "stoch_d": (18, lambda hi, lo, c: stochastic_rows(hi, lo, c)[1:]),
        "cci": (20, lambda hi, lo, c: (cci_rows(hi, lo, c),)),
        "wr": (14, lambda hi, lo, c: (williams_r_rows(hi, lo, c),)),
        "donchian": (21, lambda hi, lo, c: donchian_rows(hi, lo)),
    }
    for name, (need, fn) in needs.items():
        assert all(np.isnan(x).all() for x in fn(H[:, : need - 1], L[:, : need - 1], C[:, : need - 1])), name
        assert all(np.isfinite(x).all() for x in fn(H[:, :need], L[:, :need], C[:, :need])), name
    for key, need in MIN_SESSIONS.items():
        assert np.isnan(ohlc_votes(H[:, : need - 1], L[:, : need - 1], C[:, : need - 1])[key]).all(), key
        assert np.isfinite(ohlc_votes(H[:, :need], L[:, :need], C[:, :need])[key]).all(), key
    empty = np.zeros((M, 0))
    assert all(np.isnan(x).all() and x.shape == (M,) for x in ohlc_votes(empty, empty, empty).values())


def _all_outputs(H, L, C, V) -> list[np.ndarray]:
    return [
        *adx_rows(H, L, C),
        *stochastic_rows(H, L, C),
        cci_rows(H, L, C),
        williams_r_rows(H, L, C),
        *donchian_rows(H, L),
        *ohlc_votes(H, L, C).values(),
        average_value_traded(C, V),
    ]


def test_rows_are_independent_bit_for_bit(panel):
    H, L, C, V, _ = panel
    for end in (18, 21, 28, 77, N):
        stacked = _all_outputs(H[:, :end], L[:, :end], C[:, :end], V[:, :end])
        for i in range(M):
            alone = _all_outputs(H[i : i + 1, :end], L[i : i + 1, :end], C[i : i + 1, :end], V[i : i + 1, :end])
            for s, a in zip(stacked, alone, strict=True):
                np.testing.assert_array_equal(s[i : i + 1], a)


def test_input_validation():
    H, L, C, _ = _panel(2, 30)
    with pytest.raises(ValueError, match="2-D"):
        adx_rows(H[0], L[0], C[0])
    with pytest.raises(ValueError, match="shape"):
        cci_rows(H, L, C[:, :-1])
    bad = C.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="dense"):
        ohlc_votes(H, L, bad)
    with pytest.raises(ValueError, match="length"):
        williams_r_rows(H, L, C, length=0)
