"""Bad prices from a source: an error naming source, symbol and date, and nothing stored."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.assets.market_data import source_closes
from quant_assets.data.sessions import trading_calendar
from quant_assets.data.sources import SOURCES, Candidate, PriceSource
from quant_assets.data.validation import DataError, validate_closes, validate_symbol

XNYS, ALWAYS = trading_calendar("XNYS"), trading_calendar("24/7")

DAYS = pd.bdate_range("2020-01-06", periods=6)  # Monday .. Monday


def closes(overrides: dict | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"X:AAA": np.linspace(10, 11, 6), "X:BBB": np.linspace(20, 19, 6)}, index=DAYS)
    for (symbol, day), value in (overrides or {}).items():
        frame.loc[pd.Timestamp(day), symbol] = value
    return frame


def test_clean_closes_pass():
    validate_closes(closes(), "s", XNYS)
    with_gap = closes()
    with_gap.iloc[2, 0] = np.nan  # a missing close is a gap for the health policy, not a data error
    validate_closes(with_gap, "s", XNYS)


@pytest.mark.parametrize(
    "frame, message",
    [
        (closes({("X:BBB", "2020-01-08"): -5.0}), r"close of X:BBB on 2020-01-08 is -5\.0; .*finite positive"),
        (closes({("X:AAA", "2020-01-07"): 0.0}), r"close of X:AAA on 2020-01-07 is 0\.0"),
        (closes({("X:AAA", "2020-01-09"): np.inf}), r"close of X:AAA on 2020-01-09 is inf"),
        (pd.concat([closes().iloc[:3], closes().iloc[2:]]), r"duplicate dates \['2020-01-08'\]"),
        (closes().iloc[[0, 1, 3, 2, 4, 5]], r"dates out of order, 2020-01-08 comes after 2020-01-09 \(row 4\)"),
    ],
)
def test_bad_closes_name_source_symbol_and_date(frame, message):
    with pytest.raises(DataError, match=r"source 'vendor': " + message):
        validate_closes(frame, "vendor", XNYS)


def test_a_weekend_bar_is_an_error_on_an_exchange_calendar_and_fine_on_24_7():
    padded = closes().reindex(pd.date_range("2020-01-06", "2020-01-13")).ffill()  # Saturday and Sunday repeated
    with pytest.raises(
        DataError, match=r"X:AAA has a close on 2020-01-11, a Saturday, which is not a session of the XNYS calendar"
    ):
        validate_closes(padded, "vendor", XNYS)
    validate_closes(padded, "vendor", ALWAYS)  # 24/7: every day is a session


@pytest.mark.parametrize(
    "day, first_off, n_off",
    [
        ("2020-12-25", "2020-12-25", 1),  # Christmas
        ("2001-09-12", "2001-09-11", 4),  # closed 11-14 September 2001
        ("2012-10-30", "2012-10-29", 2),  # Hurricane Sandy
        ("2018-12-05", "2018-12-05", 1),  # national day of mourning, George H. W. Bush
    ],
)
def test_a_bar_on_an_exchange_holiday_or_closure_is_an_error_naming_it(day, first_off, n_off):
    weekdays = pd.bdate_range(pd.Timestamp(day) - pd.Timedelta(days=3), pd.Timestamp(day) + pd.Timedelta(days=3))
    frame = pd.DataFrame({"NYSE:AAA": np.linspace(10, 11, len(weekdays))}, index=weekdays)
    count = rf" \({n_off} such days in all\)" if n_off > 1 else ";"
    with pytest.raises(
        DataError, match=rf"NYSE:AAA has a close on {first_off}, a holiday or closure, .* XNYS calendar{count}"
    ):
        validate_closes(frame, "vendor", XNYS)
    sessions = frame[XNYS.is_session(frame.index.values.astype("datetime64[D]"))]
    assert len(sessions) == len(frame) - n_off
    validate_closes(sessions, "vendor", XNYS)


def test_each_exchange_has_its_own_sessions():
    # 2020-12-28 was a UK bank holiday (Boxing Day observed) and a New York session
    frame = pd.DataFrame({"LSE:AAA": [1.0, 1.1, 1.2]}, index=pd.to_datetime(["2020-12-24", "2020-12-28", "2020-12-29"]))
    validate_closes(frame, "vendor", XNYS)
    with pytest.raises(DataError, match=r"2020-12-28, a holiday or closure, which is not a session of the XLON"):
        validate_closes(frame, "vendor", trading_calendar("XLON"))


def test_annualisation_follows_the_calendar():
    assert (XNYS.annualisation, ALWAYS.annualisation) == (252, 365)
    year = XNYS.sessions(dt.date(2019, 1, 1), dt.date(2019, 12, 31))
    assert len(year) == 252  # NYSE 2019: 261 weekdays, 9 holidays
    assert len(ALWAYS.sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) == 366


def test_an_unknown_calendar_is_an_error_naming_it_and_the_alternatives():
    with pytest.raises(ValueError, match=r"unknown trading calendar 'NYSEX': use '24/7' .* XNYS, XLON"):
        trading_calendar("NYSEX")


class _BadVendor(PriceSource):
    name = "bad_vendor"

    def discover(self, as_of, symbols=None):
        return [Candidate("X:AAA", "AAA", "X", "equity", None, dt.date(2020, 1, 1), metadata={"source": self.name})]

    def closes(self, symbols, start, end):
        return closes({("X:AAA", "2020-01-08"): -1.0})[symbols]


def test_ingestion_refuses_a_bad_source(monkeypatch):
    monkeypatch.setitem(SOURCES, "bad_vendor", _BadVendor)
    with pytest.raises(DataError, match=r"source 'bad_vendor': close of X:AAA on 2020-01-08 is -1\.0"):
        source_closes({"bad_vendor": ["X:AAA"]}, dt.date(2020, 1, 1), dt.date(2020, 1, 31))


@pytest.mark.parametrize("symbol", ["../x", "a/b", "A_B|x", "X:" + "A" * 70, "X: AAA", "X:..", "", "X:A\nB"])
def test_symbols_that_could_escape_the_lakehouse_or_break_atom_ids_are_refused(symbol):
    with pytest.raises(DataError, match=r"source 'vendor': symbol .* refused"):
        validate_symbol(symbol, "vendor")
    frame = pd.DataFrame({symbol: [1.0, 1.1]}, index=DAYS[:2])
    with pytest.raises(DataError, match="refused"):
        validate_closes(frame, "vendor", XNYS)


@pytest.mark.parametrize("symbol", ["NYSE:XOM", "BINANCE:BTCUSDT", "LSE:BRK.B", "TSX:RCI-B", "INDEX:SP500"])
def test_ordinary_symbols_pass(symbol):
    assert validate_symbol(symbol, "vendor") == symbol


def test_discovery_refuses_a_bad_symbol(monkeypatch):
    from quant_assets.assets.market_data import discover
    from quant_assets.config.manifest import Universe

    class _Traversal(_BadVendor):
        name = "traversal"

        def discover(self, as_of, symbols=None):
            return [Candidate("../../etc", "etc", "X", "equity", None, dt.date(2020, 1, 1), metadata={"source": "t"})]

    monkeypatch.setitem(SOURCES, "traversal", _Traversal)
    with pytest.raises(DataError, match=r"source 'traversal': symbol '\.\./\.\./etc' refused"):
        discover(Universe(source="traversal"), dt.date(2020, 6, 1))
