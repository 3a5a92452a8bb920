"""The yfinance connector on Yahoo chart responses recorded by yfinance's own test suite.

yfinance is driven for real; only the HTTP session it is handed is fake: it answers the cookie and
crumb handshake like yfinance's replay harness does and serves the recorded chart payloads (see
fixtures/yfinance/README.md), or a scripted status / transport error first.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import polars as pl
import pytest
import requests

yf = pytest.importorskip("yfinance")

from quant_assets.data.connectors.base import BAR_SCHEMA, ConnectorError, FetchFailed  # noqa: E402
from quant_assets.data.connectors.yfinance_connector import (  # noqa: E402
    TickerNotFound,
    YFinanceConnector,
    physical_symbol,
)

FIXTURES = Path(__file__).parent / "fixtures" / "yfinance"
CHART = "/v8/finance/chart/"
# ticker -> (timezone lookup: range=1d, the daily bars); IBM has no recorded lookup, its bars
# payload answers it (yfinance reads only meta.exchangeTimezoneName from it).
RECORDED = {
    "MSFT": ("GET_v8_finance_chart_MSFT_88a60786b3.json", "GET_v8_finance_chart_MSFT_89b82124b6.json"),
    "7974.T": ("GET_v8_finance_chart_7974.T_0cc6d53c37.json", "GET_v8_finance_chart_7974.T_a872dad8b2.json"),
    "IBM": ("GET_v8_finance_chart_IBM_1fe458b33e.trimmed.json",) * 2,
}
NOT_FOUND = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}
OUTAGE = "<html><body>Will be right back...</body></html>"


def _response(status: int, text: str, url: str, content_type: str = "application/json;charset=utf-8"):
    r = requests.Response()
    r.status_code, r._content, r.url, r.encoding = status, text.encode(), url, "utf-8"
    r.headers["content-type"] = content_type
    return r


class RecordedYahoo(requests.Session):
    """A session yfinance accepts (a requests.Session) that never touches the network.

    `script[(ticker, kind)]` (kind "tz" for the timezone lookup, "bars" for the range) is a list of
    statuses or exceptions served, one per request, before the recording."""

    def __init__(self, script: dict | None = None):
        super().__init__()
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.chart_requests: list[tuple[str, str, dict]] = []

    def request(self, method, url, params=None, *args, **kwargs):
        params = dict(params or {})
        if CHART in url:
            ticker = url.split(CHART, 1)[1].split("?")[0]
            kind = "tz" if params.get("range") == "1d" else "bars"
            self.chart_requests.append((ticker, kind, params))
            queue = self.script.get((ticker, kind))
            if queue:
                item = queue.pop(0)
                if isinstance(item, BaseException):
                    raise item
                return _response(item, OUTAGE if item >= 500 else "Too Many Requests", url, "text/html")
            if ticker not in RECORDED:
                return _response(404, json.dumps(NOT_FOUND), url)
            recorded = json.loads((FIXTURES / RECORDED[ticker][kind == "bars"]).read_text())[0]["response"]
            return _response(recorded["status_code"], json.dumps(recorded["json"]), url, recorded["content_type"])
        if url.endswith("/v1/test/getcrumb"):
            return _response(200, "replay-crumb", url, "text/plain")
        if "/finance/quoteSummary/" in url or "/finance/quote" in url:  # yfinance's timezone fallback
            return _response(404, json.dumps({"quoteSummary": {"result": None, "error": {"code": "Not Found"}}}), url)
        return _response(200, "", url, "text/html")  # fc.yahoo.com, consent pages: the cookie handshake

    def bars_requests(self, ticker: str) -> list[dict]:
        return [p for t, kind, p in self.chart_requests if t == ticker and kind == "bars"]


@pytest.fixture(autouse=True)
def _isolated_yfinance(monkeypatch):
    """No reads or writes of yfinance's on-disk timezone and cookie caches (a cached timezone
    would also skip the lookup request the tests count); yfinance's switch restored after."""
    from yfinance import cache

    monkeypatch.setattr(cache, "get_tz_cache", lambda: cache._TzCacheDummy())
    monkeypatch.setattr(cache, "get_cookie_cache", lambda: cache._CookieCacheDummy())
    hide = yf.config.debug.hide_exceptions
    yield
    yf.config.debug.hide_exceptions = hide


def connector(tickers, session, sleeps=None, **kw) -> YFinanceConnector:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return YFinanceConnector(tickers, session=session, sleep=sleep, base_delay=0.5, **kw)


def listing(conn: YFinanceConnector, ticker: str):
    return next(x for x in conn.listings() if x.ticker == ticker)


# -- parsing the recorded payloads ---------------------------------------------------------------


def test_msft_daily_bars_and_the_request_yfinance_sends():
    session = RecordedYahoo()
    conn = connector(["MSFT"], session)
    bars = conn.bars(listing(conn, "MSFT"), dt.date(2026, 8, 28), dt.date(2026, 9, 27))

    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.height == 20
    assert bars.row(0) == (
        dt.date(2026, 8, 28),
        505.3299865722656,
        517.780029296875,
        504.8699951171875,
        513.530029296875,
        29207300.0,
    )
    assert bars.row(-1) == (
        dt.date(2026, 9, 25),
        499.0400085449219,
        519.4000244140625,
        497.25,
        516.1699829101562,
        38154200.0,
    )
    assert dt.date(2026, 9, 7) not in bars["date"].to_list()  # Labor Day
    # the same window yfinance's suite recorded: midnight New York of start and of end + 1 day
    (params,) = session.bars_requests("MSFT")
    assert (params["period1"], params["period2"], params["interval"]) == (1787889600, 1790568000, "1d")


def test_tokyo_bars_are_dated_by_the_exchange_local_session():
    """Yahoo stamps the Tokyo session of 28 August at 00:00 UTC (09:00 JST) and yfinance labels it
    midnight JST, which is 27 August in UTC: the bar must be dated 28 August."""
    session = RecordedYahoo()
    conn = connector(["7974.T"], session, exchanges={"7974.T": "TSE"})
    bars = conn.bars(listing(conn, "7974.T"), dt.date(2026, 8, 28), dt.date(2026, 9, 28))

    assert bars.height == 18
    assert bars.row(0) == (dt.date(2026, 8, 28), 8785.0, 9095.0, 8767.0, 8993.0, 12451600.0)
    assert bars.row(-1) == (dt.date(2026, 9, 25), 8140.0, 8275.0, 8092.0, 8100.0, 6295000.0)
    dates = bars["date"].to_list()
    # 21-23 September 2026: Respect for the Aged Day, a bridge holiday, the autumn equinox
    assert dates[dates.index(dt.date(2026, 9, 18)) + 1] == dt.date(2026, 9, 24)
    (params,) = session.bars_requests("7974.T")
    assert (params["period1"], params["period2"]) == (1787842800, 1790607600)  # midnight JST


def test_bars_are_split_and_dividend_adjusted():
    """IBM went ex-dividend (1.69 USD) on 10 August 2026: bars before it are scaled by Yahoo's
    adjclose / close, bars from it on are as traded."""
    conn = connector(["IBM"], RecordedYahoo(), exchange="NYSE")
    bars = conn.bars(listing(conn, "IBM"), dt.date(2026, 7, 27), dt.date(2026, 8, 21))

    assert bars.height == 20
    ratio = 214.73956298828125 / 216.27999877929688  # recorded adjclose / close of 27 July
    assert bars.row(0) == (
        dt.date(2026, 7, 27),
        217.75 * ratio,
        219.6300048828125 * ratio,
        215.2899932861328 * ratio,
        214.73956298828125,
        8362300.0,  # volume is not scaled
    )
    before, ex_day = bars.filter(pl.col("date").is_in([dt.date(2026, 8, 7), dt.date(2026, 8, 10)])).rows()
    assert before[4] == pytest.approx(237.27999877929688 - 1.69)  # the close less the dividend
    assert ex_day == (dt.date(2026, 8, 10), 235.0, 240.74000549316406, 234.1300048828125, 236.30999755859375, 7348900.0)
    assert bars.row(-1)[4] == 235.67999267578125


def test_only_the_asked_days_are_kept():
    """The recorded payload covers 28 August - 25 September; a narrower ask keeps its own days."""
    conn = connector(["MSFT"], RecordedYahoo())
    bars = conn.bars(listing(conn, "MSFT"), dt.date(2026, 9, 1), dt.date(2026, 9, 10))
    assert bars["date"].to_list() == [dt.date(2026, 9, d) for d in (1, 2, 3, 4, 8, 9, 10)]
    assert conn.bars(listing(conn, "MSFT"), dt.date(2026, 9, 10), dt.date(2026, 9, 1)).height == 0


def test_a_range_without_sessions_is_empty_not_an_error():
    """Yahoo answers 200 with the meta and no quotes (constructed from the recorded MSFT meta)."""

    class Weekend(RecordedYahoo):
        def request(self, method, url, params=None, *args, **kwargs):
            if CHART in url and dict(params or {}).get("range") != "1d":
                self.chart_requests.append(("MSFT", "bars", dict(params or {})))
                recorded = json.loads((FIXTURES / RECORDED["MSFT"][1]).read_text())[0]["response"]["json"]
                result = recorded["chart"]["result"][0]
                empty = {"meta": result["meta"], "indicators": {"quote": [{}], "adjclose": [{}]}}
                return _response(200, json.dumps({"chart": {"result": [empty], "error": None}}), url)
            return super().request(method, url, params, *args, **kwargs)

    sleeps: list[float] = []
    conn = connector(["MSFT"], Weekend(), sleeps)
    bars = conn.bars(listing(conn, "MSFT"), dt.date(2026, 9, 26), dt.date(2026, 9, 27))
    assert bars.height == 0 and bars.schema == pl.Schema(BAR_SCHEMA)
    assert sleeps == []


# -- retries -------------------------------------------------------------------------------------


def test_rate_limit_is_retried_then_succeeds():
    # yfinance asks twice per attempt on a status >= 400 (once per cookie strategy)
    session = RecordedYahoo({("MSFT", "bars"): [429, 429]})
    sleeps: list[float] = []
    conn = connector(["MSFT"], session, sleeps)
    bars = conn.bars(listing(conn, "MSFT"), dt.date(2026, 8, 28), dt.date(2026, 9, 27))
    assert bars.height == 20
    assert sleeps == [0.5]
    assert len(session.bars_requests("MSFT")) == 3


def test_server_errors_are_retried_with_backoff():
    session = RecordedYahoo({("MSFT", "bars"): [503, 503, 502, 502]})
    sleeps: list[float] = []
    conn = connector(["MSFT"], session, sleeps)
    assert conn.bars(listing(conn, "MSFT"), dt.date(2026, 8, 28), dt.date(2026, 9, 27)).height == 20
    assert sleeps == [0.5, 1.0]


def test_a_connection_error_in_the_timezone_lookup_is_retried():
    """yfinance would report it as 'possibly delisted; no timezone found'."""
    reset = requests.exceptions.ConnectionError("Connection reset by peer")
    session = RecordedYahoo({("MSFT", "tz"): [reset]})
    sleeps: list[float] = []
    conn = connector(["MSFT"], session, sleeps)
    assert conn.bars(listing(conn, "MSFT"), dt.date(2026, 8, 28), dt.date(2026, 9, 27)).height == 20
    assert sleeps == [0.5]


def test_a_persistent_outage_is_fetch_failed_naming_the_ticker():
    session = RecordedYahoo({("MSFT", "bars"): [503] * 10})
    sleeps: list[float] = []
    conn = connector(["MSFT"], session, sleeps)
    with pytest.raises(FetchFailed) as info:
        conn.bars(listing(conn, "MSFT"), dt.date(2026, 8, 28), dt.date(2026, 9, 27))
    assert info.value.attempts == 4
    assert "MSFT" in str(info.value) and "HTTP 503" in str(info.value)
    assert sleeps == [0.5, 1.0, 2.0]


def test_an_unknown_ticker_is_not_retried():
    session = RecordedYahoo()
    sleeps: list[float] = []
    conn = connector(["ZZZZNOPE"], session, sleeps)
    with pytest.raises(TickerNotFound, match="ZZZZNOPE.*No data found, symbol may be delisted"):
        conn.bars(listing(conn, "ZZZZNOPE"), dt.date(2026, 8, 28), dt.date(2026, 9, 27))
    assert sleeps == []
    # one attempt: the timezone lookup, asked twice by yfinance (once per cookie strategy)
    assert [kind for _, kind, _ in session.chart_requests] == ["tz", "tz"]


# -- symbols and configuration -------------------------------------------------------------------


def test_yahoo_tickers_map_to_physical_symbols():
    conn = connector(
        ["MSFT", "brk-b", "^GSPC", "EURUSD=X", "ES=F", "7974.T", "M&M.NS"],
        RecordedYahoo(),
        exchanges={"7974.T": "tse", "M&M.NS": "NSE"},
    )
    got = [(x.symbol, x.ticker, x.exchange, x.asset_type) for x in conn.listings()]
    assert got == [
        ("NASDAQ:MSFT", "MSFT", "NASDAQ", "equity"),
        ("NASDAQ:BRK-B", "BRK-B", "NASDAQ", "equity"),
        ("INDEX:GSPC", "^GSPC", "INDEX", "index"),
        ("FX:EURUSD", "EURUSD=X", "FX", "fx"),
        ("FUTURES:ES", "ES=F", "FUTURES", "future"),
        ("TSE:7974.T", "7974.T", "TSE", "equity"),
        ("NSE:M_M.NS", "M&M.NS", "NSE", "equity"),
    ]
    assert physical_symbol("^N225") == "INDEX:N225" and physical_symbol("^N225", "osaka") == "OSAKA:N225"


def test_colliding_or_invalid_symbols_are_refused():
    with pytest.raises(ConnectorError, match="'\\^GSPC' and 'GSPC' both map to INDEX:GSPC"):
        connector(["^GSPC", "GSPC"], RecordedYahoo(), exchange="INDEX")
    with pytest.raises(ConnectorError, match="invalid symbol"):
        connector(["AAPL"], RecordedYahoo(), exchange="NAS/DAQ")
    with pytest.raises(ConnectorError, match="not configured"):
        connector(["AAPL"], RecordedYahoo(), exchanges={"7974.T": "TSE"})
    with pytest.raises(ConnectorError, match="no tickers"):
        connector([], RecordedYahoo())


def test_a_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)
    with pytest.raises(ConnectorError, match=r"quant_assets\[yfinance\]"):
        YFinanceConnector(["MSFT"])


def test_recorded_yahoo_bars_through_the_ingest_store(tmp_path):
    """The yfinance connector behind the ingest store: the recorded MSFT and Nintendo sessions are
    stored under their physical symbols, on their own exchange dates, and a second sync of the same
    range asks Yahoo for nothing."""
    from quant_assets.data.connectors.store import ConnectorSource

    session = RecordedYahoo()
    yahoo = YFinanceConnector(["MSFT", "7974.T"], exchanges={"7974.T": "TSE"}, session=session, sleep=lambda s: None)
    clock = lambda: dt.datetime(2026, 9, 28, 12, tzinfo=dt.UTC)  # noqa: E731
    source = ConnectorSource("yahoo", yahoo, tmp_path, clock=clock)
    report = source.sync(dt.date(2026, 8, 28), dt.date(2026, 9, 25))
    assert report.counts()["ok"] == 2 and report.counts()["bars"] == 20 + 18
    nintendo = source.bars(["TSE:7974.T"], dt.date(2026, 8, 1), dt.date(2026, 9, 30))
    assert nintendo["date"][0] == dt.date(2026, 8, 28)  # a Tokyo session stays on its Tokyo date
    assert not set(nintendo["date"].to_list()) & {dt.date(2026, 9, 21), dt.date(2026, 9, 22), dt.date(2026, 9, 23)}
    assert [c.symbol for c in source.discover(dt.date(2026, 9, 1))] == ["NASDAQ:MSFT", "TSE:7974.T"]
    asked = len(session.chart_requests)
    again = source.sync(dt.date(2026, 8, 28), dt.date(2026, 9, 25))
    assert again.counts()["up_to_date"] == 2 and len(session.chart_requests) == asked
