"""Bad prices from a source: an error naming source, symbol and date, and nothing stored."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.assets.market_data import source_closes
from quant_assets.data.sources import SOURCES, Candidate, PriceSource
from quant_assets.data.validation import DataError, validate_closes, validate_symbol

DAYS = pd.bdate_range("2020-01-06", periods=6)  # Monday .. Monday


def closes(overrides: dict | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"X:AAA": np.linspace(10, 11, 6), "X:BBB": np.linspace(20, 19, 6)}, index=DAYS)
    for (symbol, day), value in (overrides or {}).items():
        frame.loc[pd.Timestamp(day), symbol] = value
    return frame


def test_clean_closes_pass():
    validate_closes(closes(), "s", "equity")
    with_gap = closes()
    with_gap.iloc[2, 0] = np.nan  # a missing close is a gap for the health policy, not a data error
    validate_closes(with_gap, "s", "equity")


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
        validate_closes(frame, "vendor", "equity")


def test_a_weekend_bar_is_an_error_for_exchange_traded_universes_only():
    padded = closes().reindex(pd.date_range("2020-01-06", "2020-01-13")).ffill()  # Saturday and Sunday repeated
    with pytest.raises(DataError, match=r"X:AAA has a close on 2020-01-11, a Saturday, .*exchange-traded \(etf\)"):
        validate_closes(padded, "vendor", "etf")
    validate_closes(padded, "vendor", "crypto")  # 24/7: every day is a session


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
        validate_closes(frame, "vendor", "equity")


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
