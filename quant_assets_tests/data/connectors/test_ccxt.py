"""The ccxt connector on recorded Binance responses served to a real ccxt client: discovery (symbols,
ranking, filters), bars with the payload's exact numbers, paging, retries and what is not retried,
and the synthetic example folder. No network, no real sleeping."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ccxt = pytest.importorskip("ccxt")

from quant_assets.data.connectors.base import BAR_SCHEMA, ConnectorError, FetchFailed, Listing, ms_of  # noqa: E402
from quant_assets.data.connectors.ccxt_connector import CcxtConnector, physical_symbol  # noqa: E402
from quant_assets.data.connectors.replay import (  # noqa: E402
    EXAMPLE_MARKETS,
    RecordedBinance,
    UnrecordedRequest,
    replay_client,
    write_crypto_example,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
BTC = Listing("BINANCE:BTCUSDT", "BTC/USDT", "BINANCE", "spot")
JAN1, JAN2 = dt.date(2021, 1, 1), dt.date(2021, 1, 2)


def connect(source=FIXTURES, **kwargs):
    """(connector, recorder, sleeps) over a replayed ccxt.binance; `sleep` only records."""
    sleeps: list[float] = []
    client = replay_client(source)
    return CcxtConnector(client=client, sleep=sleeps.append, **kwargs), client.session, sleeps


def recorded_info() -> dict:
    return json.loads((FIXTURES / "exchangeInfo.json").read_text())


def daily(start: dt.date, days: int) -> pl.DataFrame:
    """Bars for `days` consecutive days whose numbers encode the day (to spot a shifted page)."""
    i = np.arange(days, dtype=float)
    return pl.DataFrame(
        {
            "date": pl.date_range(start, start + dt.timedelta(days=days - 1), "1d", eager=True),
            "open": 100.0 + i,
            "high": 101.5 + i,
            "low": 99.25 + i,
            "close": 100.5 + i,
            "volume": 1000.0 + i,
        },
        schema=BAR_SCHEMA,
    )


# -- discovery -----------------------------------------------------------------------------------


def test_recorded_markets_become_ranked_listings():
    connector, recorder, _ = connect()
    listings = connector.listings()
    # DOGEUSDT is BREAK (inactive) and ETH/BTC is quoted in BTC: both skipped
    assert [x.symbol for x in listings] == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:ADAUSDT", "BINANCE:XRPUSDT"]
    assert [x.ticker for x in listings] == ["BTC/USDT", "ETH/USDT", "ADA/USDT", "XRP/USDT"]
    # the recorded 24 h quote volumes; ADA and XRP have no recorded ticker: unknown, ranked last
    assert [x.quote_volume for x in listings] == [
        float("5167027510.68728707"),
        float("2304111722.45188600"),
        None,
        None,
    ]
    assert {(x.exchange, x.asset_type) for x in listings} == {("BINANCE", "spot")}
    assert listings[0].metadata == {
        "base": "BTC",
        "quote": "USDT",
        "market_id": "BTCUSDT",
        "ccxt_type": "spot",
        "tick_size": 0.01,
        "lot_size": 0.00001,
        "min_notional": 5.0,
    }
    assert (listings[3].metadata["tick_size"], listings[3].metadata["lot_size"]) == (0.0001, 1.0)
    # a spot-only connector loads the spot markets only (ccxt's default also loads USD-M and COIN-M)
    assert recorder.log == [("/api/v3/exchangeInfo", {}), ("/api/v3/ticker/24hr", {})]


@pytest.mark.parametrize(
    "options, symbols",
    [
        ({"min_quote_volume": 3e9}, ["BINANCE:BTCUSDT"]),
        ({"min_quote_volume": 1.0}, ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"]),  # unknown volume is not >= 1
        ({"pool": 3}, ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:ADAUSDT"]),
        ({"pool": 1, "min_quote_volume": 1e12}, []),
        ({"quote": "BTC"}, ["BINANCE:ETHBTC"]),
    ],
)
def test_quote_filter_minimum_volume_and_pool(options, symbols):
    connector, _, _ = connect(**options)
    assert [x.symbol for x in connector.listings()] == symbols


def test_perpetual_swaps_are_dot_p_and_perp():
    connector, recorder, _ = connect(market_types=("swap",))
    listings = connector.listings()
    assert [(x.symbol, x.ticker, x.asset_type) for x in listings] == [
        ("BINANCE:ETHUSDT.P", "ETH/USDT:USDT", "perp"),
        ("BINANCE:LTCUSDT.P", "LTC/USDT:USDT", "perp"),
    ]
    assert listings[0].metadata | {} == {
        "base": "ETH",
        "quote": "USDT",
        "market_id": "ETHUSDT",
        "ccxt_type": "swap",
        "settle": "USDT",
        "tick_size": 0.01,
        "lot_size": 0.001,
        "min_notional": 5.0,
        "listed": "2019-09-25",  # onboardDate 1569398400000
    }
    assert [path for path, _ in recorder.log] == [
        "/fapi/v1/exchangeInfo",
        "/dapi/v1/exchangeInfo",
        "/fapi/v1/ticker/24hr",
    ]

    both, _, _ = connect(market_types=("spot", "swap"))
    symbols = [x.symbol for x in both.listings()]
    assert len(symbols) == 6 and {"BINANCE:ETHUSDT", "BINANCE:ETHUSDT.P"} <= set(symbols)


def test_symbol_mapping():
    assert physical_symbol("binance", {"base": "BTC", "quote": "USDT", "type": "spot"}) == "BINANCE:BTCUSDT"
    assert physical_symbol("binance", {"base": "BTC", "quote": "USDT", "type": "swap"}) == "BINANCE:BTCUSDT.P"
    assert physical_symbol("bybit", {"base": "1000PEPE", "quote": "USDT", "type": "spot"}) == "BYBIT:1000PEPEUSDT"


def test_market_whose_name_is_not_a_valid_symbol_is_skipped_not_fatal():
    info = recorded_info()
    odd = copy.deepcopy(info["symbols"][0]) | {"symbol": "币安人生USDT", "baseAsset": "币安人生"}
    info["symbols"].append(odd)
    connector, _, _ = connect({"exchange_info": info})
    symbols = [x.symbol for x in connector.listings()]
    assert symbols == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:ADAUSDT", "BINANCE:XRPUSDT"]


def test_what_ccxt_load_markets_requests_by_default():
    client = replay_client(FIXTURES)
    markets = client.load_markets()
    # ccxt 4.5 binance: spot, USD-M and COIN-M exchangeInfo; no capital/config call without API keys
    assert [path for path, _ in client.session.log] == [
        "/api/v3/exchangeInfo",
        "/fapi/v1/exchangeInfo",
        "/dapi/v1/exchangeInfo",
    ]
    assert markets["DOGE/USDT"]["active"] is False and markets["ETH/BTC"]["active"] is True


# -- bars ----------------------------------------------------------------------------------------


def test_recorded_klines_become_bars_with_their_exact_numbers():
    connector, recorder, _ = connect()
    bars = connector.bars(BTC, JAN1, JAN2)
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars.rows() == [
        (JAN1, 28923.63, 29600.0, 28624.57, 29331.69, 54182.925011),
        (JAN2, 29331.7, 33300.0, 28946.53, 32178.33, 129993.873362),
    ]
    # one page: two candles is shorter than the 1000 asked
    assert recorder.kline_requests() == [
        {"interval": "1d", "limit": "1000", "symbol": "BTCUSDT", "startTime": "1609459200000"}
    ]

    assert connector.bars(BTC, JAN2, JAN2).rows() == [(JAN2, 29331.7, 33300.0, 28946.53, 32178.33, 129993.873362)]
    assert connector.bars(BTC, dt.date(2020, 12, 1), dt.date(2020, 12, 31)).is_empty()
    assert connector.bars(BTC, JAN2, JAN1).is_empty()
    assert [q["startTime"] for q in recorder.kline_requests()] == ["1609459200000", "1609545600000", "1606780800000"]


@pytest.mark.parametrize("stored_days", [2500, 3500])  # the data ends at `end` (short last page) / runs past it
def test_paging_forward_has_no_gap_and_no_duplicate(stored_days):
    start = dt.date(2015, 1, 1)
    end = start + dt.timedelta(days=2499)
    stored = daily(start, stored_days)
    connector, recorder, _ = connect({"exchange_info": recorded_info(), "klines": {"BTCUSDT": stored}})
    bars = connector.bars(BTC, start, end)
    asked = recorder.kline_requests("BTCUSDT")
    assert [int(q["startTime"]) for q in asked] == [ms_of(start + dt.timedelta(days=k)) for k in (0, 1000, 2000)]
    assert {q["limit"] for q in asked} == {"1000"}
    assert bars.height == 2500 and bars["date"].is_unique().all()
    assert bars["date"].to_list() == pl.date_range(start, end, "1d", eager=True).to_list()
    assert bars.equals(stored.head(2500))


def test_page_limit_below_the_venue_page():
    start = dt.date(2020, 1, 1)
    connector, recorder, _ = connect(
        {"exchange_info": recorded_info(), "klines": {"BTCUSDT": daily(start, 1000)}}, page_limit=400
    )
    bars = connector.bars(BTC, start, start + dt.timedelta(days=999))
    assert [(q["startTime"], q["limit"]) for q in recorder.kline_requests()] == [
        (str(ms_of(start + dt.timedelta(days=k))), "400") for k in (0, 400, 800)
    ]
    assert bars.height == 1000 and bars["close"].to_list() == [100.5 + k for k in range(1000)]


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 418, 503])
def test_transient_errors_are_retried_with_backoff(status):
    connector, recorder, sleeps = connect()
    recorder.fail("BTCUSDT", 2, status)
    bars = connector.bars(BTC, JAN1, JAN2)
    assert sleeps == [1.0, 2.0]
    assert [q["startTime"] for q in recorder.kline_requests()] == ["1609459200000"] * 3
    assert bars["close"].to_list() == [29331.69, 32178.33]


def test_persistent_503_is_fetch_failed_naming_the_symbol():
    connector, recorder, sleeps = connect(attempts=4, base_delay=0.5)
    recorder.fail("BTCUSDT", 10, 503)
    with pytest.raises(FetchFailed) as caught:
        connector.bars(BTC, JAN1, JAN2)
    assert "BINANCE:BTCUSDT" in str(caught.value) and "4 attempt(s)" in str(caught.value)
    assert caught.value.attempts == 4
    assert isinstance(caught.value.cause, ccxt.ExchangeNotAvailable)  # ccxt's own 503 mapping
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(recorder.kline_requests()) == 4


def test_bad_symbol_is_raised_at_once():
    connector, recorder, sleeps = connect()
    # a unified symbol the venue does not list: ccxt refuses it before any request
    with pytest.raises(ccxt.BadSymbol):
        connector.bars(Listing("BINANCE:NOPEUSDT", "NOPE/USDT", "BINANCE", "spot"), JAN1, JAN2)
    assert recorder.kline_requests() == []
    # a listed market the venue answers with {"code":-1121,"msg":"Invalid symbol."} (HTTP 400)
    with pytest.raises(ccxt.BadSymbol):
        connector.bars(Listing("BINANCE:ADAUSDT", "ADA/USDT", "BINANCE", "spot"), JAN1, JAN2)
    assert len(recorder.kline_requests("ADAUSDT")) == 1
    assert sleeps == []


# -- building the connector ----------------------------------------------------------------------


def test_missing_ccxt_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt -> ImportError
    with pytest.raises(ConnectorError, match=r'needs the `ccxt` package: pip install "quant_assets\[ccxt\]"'):
        CcxtConnector()


def test_unknown_exchange_and_bad_options_are_connector_errors():
    with pytest.raises(ConnectorError, match=r"unknown exchange id 'binanse'.*'binance'"):
        CcxtConnector(exchange="binanse")
    with pytest.raises(ConnectorError, match="market_types"):
        CcxtConnector(client=replay_client(FIXTURES), market_types=("future",))


@pytest.mark.parametrize(
    "exchange, market_types, families",
    [
        ("binance", ("spot",), ["spot"]),  # ccxt's default: spot, linear, inverse
        ("binance", ("spot", "swap"), ["spot", "linear", "inverse"]),
        ("okx", ("swap",), ["swap"]),  # ccxt's default: spot, future, swap, option
        ("binanceusdm", ("spot",), ["linear"]),  # no spot family to choose: left alone
    ],
)
def test_built_client_keeps_ccxt_rate_limiter_and_loads_only_kept_types(exchange, market_types, families):
    connector = CcxtConnector(exchange=exchange, market_types=market_types)  # built, nothing requested yet
    assert connector.client.enableRateLimit is True
    assert connector.client.options["fetchMarkets"]["types"] == families
    assert connector.exchange == exchange


def test_replay_refuses_what_it_has_not_recorded():
    client = replay_client(FIXTURES)
    with pytest.raises(UnrecordedRequest, match="depth"):
        client.fetch_order_book("BTC/USDT")


# -- the synthetic example -----------------------------------------------------------------------


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_crypto_example_is_served_like_binance(tmp_path):
    folder = write_crypto_example(tmp_path / "binance")
    first = digest(folder)
    assert digest(write_crypto_example(folder)) == first  # idempotent
    assert len(first) == 2 + 12 + 3  # exchangeInfo, tickers; 12 USDT + ETHBTC, BNBBTC + halted LUNAUSDT klines

    connector, recorder, _ = connect(RecordedBinance.from_folder(folder))
    listings = connector.listings()
    bases = [b for b, *_ in EXAMPLE_MARKETS[:12]]
    assert sorted(x.symbol for x in listings) == sorted(f"BINANCE:{b}USDT" for b in bases)  # no LUNA, no *BTC
    volumes = [x.quote_volume for x in listings]
    assert volumes == sorted(volumes, reverse=True)
    assert volumes[0] > 3e8 and volumes[-1] < 3e6  # ~1e9 .. ~1e6 a day

    start, end = dt.date(2019, 1, 1), dt.date(2022, 12, 31)
    listed = {f"BINANCE:{b}USDT": max(start, day) for b, day, *_ in EXAMPLE_MARKETS[:12]}
    pages = 0
    for listing in listings:
        bars = connector.bars(listing, start, end)
        stored = pl.read_parquet(folder / "klines" / f"{listing.metadata['market_id']}.parquet")
        assert bars.equals(stored)  # served through Binance's strings and back, exactly
        first_day = listed[listing.symbol]
        assert bars["date"].to_list() == pl.date_range(first_day, end, "1d", eager=True).to_list()  # 24/7
        o, h, lo, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
        assert (lo > 0).all() and (v > 0).all()
        vol = float(np.diff(np.log(c)).std() * np.sqrt(365))
        assert 0.4 < vol < 1.2, (listing.symbol, vol)
        pages += bars.height // 1000 + 1  # full pages, then a short one
    assert listed["BINANCE:SOLUSDT"] == dt.date(2020, 8, 11)  # listed after the start: point in time
    assert len(recorder.kline_requests()) == pages == 22  # SOL and DOT (listed 2020) fit in one page
