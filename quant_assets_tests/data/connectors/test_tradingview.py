"""The TradingView screener connector on scanner responses published by tradingview-screener
(see fixtures/tradingview/README.md); the HTTP POST goes to a fake session, never the network."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
import requests

pytest.importorskip("tradingview_screener")

from quant_assets.data.connectors.base import ConnectorError, FetchFailed, Listing  # noqa: E402
from quant_assets.data.connectors.tradingview_connector import (  # noqa: E402
    DEFAULT_COLUMNS,
    TradingViewConnector,
    meta_key,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tradingview"
URL = "https://scanner.tradingview.com/america/scan"
dumps = json.dumps  # `Scanner.post` takes a parameter named json, as requests does


def _response(status: int, body: str):
    r = requests.Response()
    r.status_code, r._content, r.encoding = status, body.encode(), "utf-8"
    r.headers["content-type"] = "application/json"
    return r


class Scanner:
    """Stands in for a requests.Session: records each POST, answers with `answers` in turn (a
    status, an exception, or a payload dict for 200), the last one repeating."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.posts: list[dict] = []

    def post(self, url, json=None, headers=None, timeout=None):
        self.posts.append({"url": url, "json": json, "headers": headers, "timeout": timeout})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, int):
            return _response(answer, "Too Many Requests" if answer == 429 else '{"error": "scanner unavailable"}')
        return _response(200, dumps(answer))


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def connector(scanner, sleeps=None, **kw) -> TradingViewConnector:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return TradingViewConnector(session=scanner, sleep=sleep, base_delay=0.5, **kw)


FILTERS = [  # one of each operation; the screener's own syntax is also what it must send
    {"left": "market_cap_basic", "operation": "greater", "right": 1e9},
    {"left": "close", "operation": "less", "right": 1000},
    {"left": "exchange", "operation": "in_range", "right": ["NASDAQ", "NYSE"]},
    {"left": "Recommend.All", "operation": "in_range", "right": [0.1, 1]},
    {"left": "type", "operation": "equal", "right": "stock"},
    {"left": "name", "operation": "match", "right": "AA"},
]


# -- the request ---------------------------------------------------------------------------------


def test_the_request_body_markets_columns_filters_sort_and_range():
    scanner = Scanner(fixture("scan_close_volume.json"))
    conn = connector(
        scanner,
        filters=FILTERS,
        limit=50,
    )
    conn.listings()
    (post,) = scanner.posts
    body = post["json"]
    assert post["url"] == URL and post["timeout"] == 20.0
    assert post["headers"]["origin"] == "https://www.tradingview.com"  # the library's headers
    assert body["markets"] == ["america"]
    assert body["columns"] == DEFAULT_COLUMNS
    # the library's default (primary listings) kept, then ours, in order
    assert body["filter"] == [{"left": "is_primary", "operation": "equal", "right": True}, *FILTERS]
    assert "filter2" in body  # common / preferred / DR / non-ETF funds
    assert body["sort"] == {"sortBy": "Value.Traded", "sortOrder": "desc", "nullsFirst": False}
    assert body["range"] == [0, 50]


def test_a_non_stock_market_drops_the_stock_defaults():
    scanner = Scanner({"totalCount": 0, "data": []})
    conn = connector(scanner, market="crypto", columns=["name", "close", "volume"], sort_by="volume", ascending=True)
    assert conn.listings() == []
    (post,) = scanner.posts
    assert post["url"] == "https://scanner.tradingview.com/crypto/scan"
    assert post["json"]["filter"] == [] and "filter2" not in post["json"]
    assert post["json"]["sort"]["sortOrder"] == "asc" and post["json"]["range"] == [0, 100]


# -- parsing the recorded payloads ---------------------------------------------------------------


def test_listings_from_the_raw_response_the_library_documents():
    """`Query().select('close', 'volume').limit(5).get_scanner_data_raw()`."""
    conn = connector(Scanner(fixture("scan_close_volume.json")), columns=["close", "volume"], limit=5)
    got = conn.listings()
    assert [x.symbol for x in got] == ["NASDAQ:NVDA", "AMEX:SPY", "NASDAQ:QQQ", "NASDAQ:TSLA", "NASDAQ:SBUX"]
    assert got[0] == Listing(
        symbol="NASDAQ:NVDA",
        ticker="NASDAQ:NVDA",
        exchange="NASDAQ",  # from the symbol: no exchange column selected
        asset_type="equity",
        sector=None,
        quote_volume=116.14 * 312636630,  # close x volume when Value.Traded is not selected
        metadata={"close": 116.14, "volume": 312636630},
    )
    assert (got[1].exchange, got[4].quote_volume) == ("AMEX", 95.9 * 157211696)


def test_listings_from_the_readme_quickstart():
    conn = connector(Scanner(fixture("scan_quickstart.json")), columns=["name", "close", "volume", "market_cap_basic"])
    got = conn.listings()
    assert len(got) == 5
    assert got[0].metadata == {"name": "NVDA", "close": 127.25, "volume": 298220762, "market_cap": 3.13035e12}
    spy = got[1]
    assert (spy.symbol, spy.exchange, spy.quote_volume) == ("AMEX:SPY", "AMEX", 558.70 * 33701795)
    assert "market_cap" not in spy.metadata  # the scanner sends null for an ETF's market cap
    assert got[-1].metadata["market_cap"] == 2.531306e11


def test_default_columns_become_listing_fields_and_metadata():
    """A row in the default column order (values constructed; no recording selects these columns)."""
    row = ["AAPL", "NASDAQ", 227.5, 41000000, 9.3275e9, 3.4e12, "Electronic Technology", "stock", 0.42, 0.6, 0.24, 21.3]
    payload = {
        "totalCount": 3,
        "data": [
            {"s": "NASDAQ:AAPL", "d": row},
            {"s": "CME_MINI:ES1!", "d": row},  # not a valid physical symbol: skipped
            {
                "s": "NYSE:BRK.B",
                "d": ["BRK.B", "NYSE", 470.0, 3e6, None, 1e12, "Finance", "dr", None, None, None, None],
            },
        ],
    }
    got = connector(Scanner(payload)).listings()
    assert got[0] == Listing(
        symbol="NASDAQ:AAPL",
        ticker="NASDAQ:AAPL",
        exchange="NASDAQ",
        asset_type="equity",
        sector="Electronic Technology",
        quote_volume=9.3275e9,
        metadata={
            "name": "AAPL",
            "close": 227.5,
            "volume": 41000000,
            "market_cap": 3.4e12,
            "recommend_all": 0.42,
            "recommend_ma": 0.6,
            "recommend_other": 0.24,
            "adx": 21.3,
        },
    )
    brk = got[1]
    assert (brk.symbol, brk.asset_type, brk.quote_volume) == ("NYSE:BRK.B", "equity", None)
    assert connector(Scanner(payload), asset_type="etf").listings()[0].asset_type == "etf"
    assert meta_key("Perf.1M") == "perf_1m"


# -- retries and errors --------------------------------------------------------------------------


def test_rate_limit_and_server_errors_are_retried_then_succeed():
    scanner = Scanner(429, 502, fixture("scan_close_volume.json"))
    sleeps: list[float] = []
    got = connector(scanner, sleeps, columns=["close", "volume"]).listings()
    assert len(got) == 5
    assert sleeps == [0.5, 1.0]
    assert len(scanner.posts) == 3


def test_a_connection_error_is_retried():
    scanner = Scanner(requests.ConnectionError("reset"), fixture("scan_close_volume.json"))
    sleeps: list[float] = []
    assert len(connector(scanner, sleeps, columns=["close", "volume"]).listings()) == 5
    assert sleeps == [0.5]


def test_a_persistent_outage_is_fetch_failed_naming_the_market():
    sleeps: list[float] = []
    with pytest.raises(FetchFailed, match="tradingview america scan.*HTTP 503") as info:
        connector(Scanner(503), sleeps).listings()
    assert info.value.attempts == 4 and sleeps == [0.5, 1.0, 2.0]


def test_a_refused_query_is_not_retried():
    scanner = Scanner(400)
    sleeps: list[float] = []
    with pytest.raises(ConnectorError, match="refused the query \\(HTTP 400"):
        connector(scanner, sleeps, columns=["close", "no_such_column"]).listings()
    assert sleeps == [] and len(scanner.posts) == 1


def test_unknown_filter_operations_are_refused_by_name():
    with pytest.raises(ConnectorError, match="unknown filter operation 'between'"):
        connector(Scanner(200), filters=[{"left": "close", "operation": "between", "right": [1, 2]}])
    with pytest.raises(ConnectorError, match="in_range takes a list"):
        connector(Scanner(200), filters=[{"left": "close", "operation": "in_range", "right": 5}])
    with pytest.raises(ConnectorError, match="left, operation, right"):
        connector(Scanner(200), filters=[{"column": "close"}])


def test_bars_point_to_another_source():
    conn = connector(Scanner(200))
    listing = Listing("NASDAQ:AAPL", "NASDAQ:AAPL", "NASDAQ", "equity")
    with pytest.raises(ConnectorError, match="no price history.*yfinance.*ccxt"):
        conn.bars(listing, dt.date(2026, 1, 2), dt.date(2026, 1, 30))


def test_a_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tradingview_screener", None)
    with pytest.raises(ConnectorError, match=r"quant_assets\[tradingview\]"):
        TradingViewConnector()
