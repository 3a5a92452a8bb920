"""The universe panel on its trading calendar: a session without any bar is a gap, never bridged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.data.sessions import trading_calendar
from quant_assets.selection.features import FEATURE_COLUMNS, features_of_windows
from quant_assets.selection.market import Panel

XNYS = trading_calendar("XNYS")


def _closes(days: list[str], values: dict[str, list[float]]) -> pl.DataFrame:
    rows = [(dt.date.fromisoformat(d), s, v[i]) for s, v in values.items() for i, d in enumerate(days)]
    return pl.DataFrame(rows, schema={"date": pl.Date, "symbol": pl.Utf8, "close": pl.Float64}, orient="row")


def test_a_session_no_symbol_traded_becomes_a_row_of_missing_closes():
    # 2020-03-10 (a Tuesday session) is absent from the vendor's file for every symbol
    days = ["2020-03-06", "2020-03-09", "2020-03-11", "2020-03-12"]
    panel = Panel.from_closes(_closes(days, {"X:A": [10, 11, 12, 13], "X:B": [20, 20.5, 21, 22]}))
    on = panel.on_sessions(XNYS, dt.date(2020, 3, 12))
    assert on.dates.astype(str).tolist() == ["2020-03-06", "2020-03-09", "2020-03-10", "2020-03-11", "2020-03-12"]
    assert np.isnan(on.closes[2]).all()
    # no return bridges the missing session: the one on it and the one after it are missing
    assert np.isnan(on.returns[2:4]).all()
    assert on.returns[1].tolist() == pytest.approx([0.1, 0.025], abs=1e-15)
    assert on.returns[4].tolist() == pytest.approx([13 / 12 - 1, 22 / 21 - 1], abs=1e-15)
    # without the calendar the 2-day move 11 -> 12 passed for one session's return
    assert panel.returns[2].tolist() == pytest.approx([12 / 11 - 1, 21 / 20.5 - 1], abs=1e-15)


def test_a_complete_panel_is_unchanged_and_24_7_adds_the_weekend():
    days = ["2020-03-06", "2020-03-09", "2020-03-10"]
    panel = Panel.from_closes(_closes(days, {"X:A": [10, 11, 12]}))
    assert panel.on_sessions(XNYS, dt.date(2020, 3, 10)) is panel
    crypto = panel.on_sessions(trading_calendar("24/7"), dt.date(2020, 3, 10))
    assert crypto.dates.astype(str).tolist()[:4] == ["2020-03-06", "2020-03-07", "2020-03-08", "2020-03-09"]
    assert np.isnan(crypto.closes[1:3]).all()


def test_a_panel_of_stored_returns_keeps_them_on_added_sessions():
    rows = [(dt.date(2020, 3, 6), "X:A", 0.01), (dt.date(2020, 3, 10), "X:A", 0.02)]
    stored = pl.DataFrame(rows, schema={"date": pl.Date, "symbol": pl.Utf8, "ret": pl.Float64}, orient="row")
    on = Panel.from_closes(stored, value="ret").on_sessions(XNYS, dt.date(2020, 3, 10))
    assert on.dates.astype(str).tolist() == ["2020-03-06", "2020-03-09", "2020-03-10"]
    assert on.returns[:, 0].tolist()[0] == 0.01 and np.isnan(on.returns[1, 0]) and on.returns[2, 0] == 0.02


def test_annualised_features_follow_the_calendar():
    rng = np.random.default_rng(7)
    window = [rng.normal(0.001, 0.02, size=(3, 200))]
    i_mom, i_vol = FEATURE_COLUMNS.index("momentum"), FEATURE_COLUMNS.index("volatility")
    exchange = features_of_windows(window, window=120, annualisation=XNYS.annualisation)[0]
    always = features_of_windows(window, window=120, annualisation=trading_calendar("24/7").annualisation)[0]
    assert always[:, i_mom] == pytest.approx(exchange[:, i_mom] * 365 / 252, rel=1e-12)
    assert always[:, i_vol] == pytest.approx(exchange[:, i_vol] * np.sqrt(365 / 252), rel=1e-12)


def test_the_sessions_up_to_a_date_do_not_depend_on_the_data_after_it():
    """Sessions D-2 .. D missing for every symbol: D's window holds them as missing closes whether or
    not bars after D exist (filling only up to the last bar would make D's verdicts depend on them)."""
    d = dt.date(2020, 3, 13)  # a Friday; 03-11 .. 03-13 have no bar
    ends_early = Panel.from_closes(_closes(["2020-03-06", "2020-03-09", "2020-03-10"], {"X:A": [10, 11, 12]}))
    goes_on = Panel.from_closes(
        _closes(["2020-03-06", "2020-03-09", "2020-03-10", "2020-03-16"], {"X:A": [10, 11, 12, 13]})
    )
    a, b = ends_early.on_sessions(XNYS, d), goes_on.on_sessions(XNYS, d)
    rows_a, rows_b = a.window_rows(d, 10), b.window_rows(d, 10)
    assert a.dates[rows_a[0] : rows_a[1] + 1].tolist() == b.dates[rows_b[0] : rows_b[1] + 1].tolist()
    assert a.dates[rows_a[1]].astype(dt.date) == d
    np.testing.assert_array_equal(a.closes[: rows_a[1] + 1], b.closes[: rows_b[1] + 1])
