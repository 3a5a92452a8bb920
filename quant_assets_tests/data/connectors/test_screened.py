"""A TradingView screen priced by another vendor: the screener's names are stored, the price
vendor's ids are asked; and the manifest refuses a screen with nothing to price it."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from quant_assets.config.manifest import ManifestError, parse_manifest
from quant_assets.data.connectors.base import ConnectorError
from quant_assets.data.connectors.screened import Screened, yahoo_ticker
from quant_assets.data.connectors.store import ConnectorSource

pytest.importorskip("ccxt")
pytest.importorskip("tradingview_screener")

from quant_assets.data.connectors.ccxt_connector import CcxtConnector  # noqa: E402
from quant_assets.data.connectors.replay import replay_client, write_crypto_example  # noqa: E402
from quant_assets.data.connectors.tradingview_connector import TradingViewConnector  # noqa: E402
from quant_assets_tests.data.connectors.test_tradingview import Scanner  # noqa: E402


@pytest.mark.parametrize(
    "symbol, ticker",
    [("NASDAQ:AAPL", "AAPL"), ("NYSE:BRK.B", "BRK-B"), ("LSE:VOD", "VOD.L"), ("TSE:7203", "7203.T")],
)
def test_yahoo_tickers_of_screener_symbols(symbol, ticker):
    assert yahoo_ticker(symbol) == ticker


def test_a_venue_without_a_yahoo_suffix_is_named():
    with pytest.raises(ConnectorError, match=r"MOEX:SBER: no Yahoo suffix known for venue 'MOEX'"):
        yahoo_ticker("MOEX:SBER")


def test_a_crypto_screen_priced_through_ccxt(tmp_path):
    folder = write_crypto_example(tmp_path / "rec", start=dt.date(2021, 1, 1), end=dt.date(2021, 3, 31), n=4)
    screen = {
        "totalCount": 2,
        "data": [{"s": "BINANCE:ETHUSDT", "d": [2.0e9]}, {"s": "BINANCE:BTCUSDT", "d": [5.0e9]}],
    }
    screener = TradingViewConnector(
        market="crypto", columns=["Value.Traded"], session=Scanner(screen), sleep=lambda s: None
    )
    prices = CcxtConnector(client=replay_client(folder), sleep=lambda s: None)
    clock = lambda: dt.datetime(2021, 4, 1, 12, tzinfo=dt.UTC)  # noqa: E731
    source = ConnectorSource("screen", Screened(screener, prices), tmp_path / "lh", clock=clock)
    report = source.sync(dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    assert report.counts()["ok"] == 2 and report.counts()["bars"] == 2 * 90
    assert prices.client.session.kline_requests("BTCUSDT")  # the exchange's own id was asked
    stored = source.bars(["BINANCE:BTCUSDT"], dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    served = pl.read_parquet(folder / "klines" / "BTCUSDT.parquet")
    assert stored["close"].to_list() == served.filter(pl.col("date") <= dt.date(2021, 3, 31))["close"].to_list()
    assert [c.symbol for c in source.discover(dt.date(2021, 3, 1))] == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"]


def test_a_screen_needs_a_price_source_of_a_kind_that_has_bars():
    base = {
        "calendar": {"start": "2021-01-01"},
        "universes": {"screened": {"source": "screen"}},
        "sleeves": {"s": {"universe": "screened", "logic": "trend", "direction": "long"}},
    }
    spec = base | {"sources": {"screen": {"kind": "tradingview", "bars_from": "folder"}, "folder": {"path": "/tmp"}}}
    with pytest.raises(ManifestError, match=r"sources\.screen\.bars_from: 'folder' must name a source of kind"):
        parse_manifest(spec)
    ok = base | {"sources": {"screen": {"kind": "tradingview", "bars_from": "yahoo"}, "yahoo": {"kind": "yfinance"}}}
    assert parse_manifest(ok).sources["screen"].bars_from == "yahoo"
