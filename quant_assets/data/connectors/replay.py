"""Binance's HTTP API served from recorded responses, so ccxt's own code runs offline.

ccxt's synchronous `Exchange.fetch` sends every request through `self.session.request(...)` (a
`requests.Session`) and only then does its own work on the `requests.Response`: `binance.handle_errors`
turns a 418/429 into DDoSProtection and Binance's JSON error codes into exceptions (-1121 ->
BadSymbol), `handle_http_status_code` maps the remaining statuses (503 -> ExchangeNotAvailable),
and the JSON is parsed into markets, tickers and candles. Replacing `client.session` is the lowest
hook that keeps all of that: URL building, parsing and error mapping are ccxt's, only the network
is gone. A request no recording answers raises `UnrecordedRequest` (a test should fail loudly, not
get an empty answer).

`RecordedBinance` answers the endpoints a connector uses: `exchangeInfo` and `ticker/24hr` (spot
and USD-M futures) from recorded JSON payloads, and `klines` (`startTime` / `endTime` / `limit`,
at most 1000 a page, like Binance) from daily bars per Binance market id, emitted as Binance's raw
kline arrays. `fail` scripts transient errors; `log` records every request.

`write_crypto_example` writes a folder `RecordedBinance.from_folder` serves: a dozen USDT markets
with daily OHLCV from a seeded one-factor model, every calendar day (crypto trades 24/7), some
markets listed after the start (point-in-time listing), plus markets discovery must skip.
"""

from __future__ import annotations

import datetime as dt
import http
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import polars as pl
import requests
from requests.structures import CaseInsensitiveDict

from quant_assets.data.connectors.base import BAR_SCHEMA, ms_of, require

DAY_MS = 86_400_000
SPOT_KLINES_MAX, FAPI_KLINES_MAX, KLINES_DEFAULT = 1000, 1500, 500
EXCHANGE_INFO, TICKERS, FAPI_EXCHANGE_INFO, FAPI_TICKERS = (
    "exchangeInfo.json",
    "ticker_24hr.json",
    "fapi_exchangeInfo.json",
    "fapi_ticker_24hr.json",
)
KLINES_DIR, FAPI_KLINES_DIR = "klines", "fapi_klines"

# Binance's own bodies for the statuses `fail` scripts (a 5xx from the edge is not JSON).
ERROR_BODIES: dict[int, tuple[str, str]] = {
    429: (
        "application/json;charset=UTF-8",
        '{"code":-1003,"msg":"Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. '
        'Please use the websocket for live updates to avoid polling the API."}',
    ),
    418: (
        "application/json;charset=UTF-8",
        '{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until 1700000000000. '
        'Please use the websocket for live updates to avoid bans."}',
    ),
    503: ("text/html", "<html><body><h1>503 Service Unavailable</h1></body></html>"),
    502: ("text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    504: ("text/html", "<html><body><h1>504 Gateway Time-out</h1></body></html>"),
}
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
INVALID_INTERVAL = {"code": -1120, "msg": "Invalid interval."}

Klines = pl.DataFrame | Sequence[Sequence[Any]]  # daily bars in BAR_SCHEMA, or recorded raw kline arrays


class UnrecordedRequest(AssertionError):
    """A request the recording cannot answer (an endpoint or a parameter ccxt was not expected to send)."""


def kline_rows(bars: pl.DataFrame) -> list[list]:
    """Daily bars (BAR_SCHEMA) as Binance's raw kline arrays: open time, OHLC and volume as strings,
    close time, quote volume (volume x typical price), trades, taker buy volumes, an unused "0"."""
    rows = []
    for day, o, h, lo, c, v in bars.select(list(BAR_SCHEMA)).sort("date").iter_rows():
        opened = ms_of(day)
        quote = v * (h + lo + c) / 3.0
        rows.append(
            [
                opened,
                f"{o:.8f}",
                f"{h:.8f}",
                f"{lo:.8f}",
                f"{c:.8f}",
                f"{v:.8f}",
                opened + DAY_MS - 1,
                f"{quote:.8f}",
                max(1, int(quote / 2500.0)),
                f"{v * 0.5:.8f}",
                f"{quote * 0.5:.8f}",
                "0",
            ]
        )
    return rows


class RecordedBinance(requests.Session):
    """A `requests.Session` answering Binance's public endpoints from recordings (see the module
    docstring). Assign it to a ccxt binance client's `session`, or use `replay_client`."""

    def __init__(
        self,
        exchange_info: Mapping[str, Any],
        tickers: Sequence[Mapping[str, Any]] = (),
        klines: Mapping[str, Klines] | None = None,
        fapi_exchange_info: Mapping[str, Any] | None = None,
        fapi_tickers: Sequence[Mapping[str, Any]] = (),
        fapi_klines: Mapping[str, Klines] | None = None,
    ):
        super().__init__()
        self.exchange_info = dict(exchange_info)
        self.tickers = [dict(t) for t in tickers]
        self.fapi_exchange_info = dict(fapi_exchange_info or _empty_info(self.exchange_info))
        self.fapi_tickers = [dict(t) for t in fapi_tickers]
        self.klines = {k: _as_rows(v) for k, v in (klines or {}).items()}
        self.fapi_klines = {k: _as_rows(v) for k, v in (fapi_klines or {}).items()}
        self.log: list[tuple[str, dict[str, str]]] = []
        self._failures: dict[str, list[tuple[int, str | None]]] = {}

    @classmethod
    def from_folder(cls, path: str | Path) -> RecordedBinance:
        """Read a recorded folder: `exchangeInfo.json`, optionally `ticker_24hr.json`,
        `fapi_exchangeInfo.json`, `fapi_ticker_24hr.json`, and `klines/` / `fapi_klines/` holding
        `<MARKETID>.parquet` (daily bars) or `<MARKETID>.json` (recorded raw klines)."""
        folder = Path(path)
        if not (folder / EXCHANGE_INFO).is_file():
            raise FileNotFoundError(f"{folder}: no {EXCHANGE_INFO}; is this a recorded Binance folder?")

        def read(name: str, default: Any) -> Any:
            f = folder / name
            return json.loads(f.read_text()) if f.is_file() else default

        return cls(
            exchange_info=read(EXCHANGE_INFO, None),
            tickers=read(TICKERS, []),
            klines=_read_klines(folder / KLINES_DIR),
            fapi_exchange_info=read(FAPI_EXCHANGE_INFO, None),
            fapi_tickers=read(FAPI_TICKERS, []),
            fapi_klines=_read_klines(folder / FAPI_KLINES_DIR),
        )

    def fail(self, market_id: str, times: int, status: int = 429, body: str | None = None) -> None:
        """The next `times` kline requests for `market_id` answer HTTP `status` (Binance's body for
        it, or `body`)."""
        self._failures.setdefault(market_id, []).extend([(status, body)] * times)

    def kline_requests(self, market_id: str | None = None) -> list[dict[str, str]]:
        """The query parameters of every kline request so far (for one market id, or all)."""
        return [
            q
            for path, q in self.log
            if path.endswith("/klines") and (market_id is None or q.get("symbol") == market_id)
        ]

    # -- the hook ccxt calls ---------------------------------------------------------------------

    def request(self, method, url, params=None, data=None, headers=None, **kwargs):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if params:
            query.update({str(k): str(v) for k, v in dict(params).items()})
        self.log.append((parts.path, query))
        if method != "GET":
            raise UnrecordedRequest(f"the recording serves public GETs only, not {method} {url}")
        routes = {
            ("api.binance.com", "/api/v3/exchangeInfo"): lambda: (200, self.exchange_info),
            ("api.binance.com", "/api/v3/ticker/24hr"): lambda: self._tickers(self.tickers, query),
            ("api.binance.com", "/api/v3/klines"): lambda: self._klines(self.klines, query, SPOT_KLINES_MAX),
            ("api.binance.com", "/api/v3/time"): lambda: (200, {"serverTime": self.exchange_info.get("serverTime")}),
            ("fapi.binance.com", "/fapi/v1/exchangeInfo"): lambda: (200, self.fapi_exchange_info),
            ("fapi.binance.com", "/fapi/v1/ticker/24hr"): lambda: self._tickers(self.fapi_tickers, query),
            ("fapi.binance.com", "/fapi/v1/klines"): lambda: self._klines(self.fapi_klines, query, FAPI_KLINES_MAX),
            ("dapi.binance.com", "/dapi/v1/exchangeInfo"): lambda: (200, _empty_info(self.exchange_info)),
        }
        route = routes.get((parts.hostname or "", parts.path))
        if route is None:
            raise UnrecordedRequest(f"no recording answers GET {url}")
        failure = self._next_failure(parts.path, query)
        if failure is not None:
            return failure_response(url, *failure)
        status, payload = route()
        return response(url, status, json.dumps(payload), "application/json;charset=UTF-8")

    def _next_failure(self, path: str, query: Mapping[str, str]) -> tuple[int, str | None] | None:
        if not path.endswith("/klines"):
            return None
        queue = self._failures.get(query.get("symbol", ""))
        return queue.pop(0) if queue else None

    @staticmethod
    def _tickers(tickers: list[dict], query: Mapping[str, str]) -> tuple[int, Any]:
        by_id = {t["symbol"]: t for t in tickers}
        if "symbol" in query:
            ticker = by_id.get(query["symbol"])
            return (200, ticker) if ticker is not None else (400, INVALID_SYMBOL)
        if "symbols" in query:
            wanted = json.loads(query["symbols"])
            if any(s not in by_id for s in wanted):
                return 400, INVALID_SYMBOL
            return 200, [by_id[s] for s in wanted]
        if query:
            raise UnrecordedRequest(f"ticker/24hr with unexpected parameters {sorted(query)}")
        return 200, tickers

    @staticmethod
    def _klines(table: Mapping[str, list[list]], query: Mapping[str, str], most: int) -> tuple[int, Any]:
        rows = table.get(query.get("symbol", ""))
        if rows is None:
            return 400, INVALID_SYMBOL
        if query.get("interval") != "1d":  # only daily candles are recorded
            return 400, INVALID_INTERVAL
        limit = min(int(query.get("limit", KLINES_DEFAULT)), most)
        start = int(query["startTime"]) if "startTime" in query else None
        end = int(query["endTime"]) if "endTime" in query else None
        inside = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        # Binance pages forward from startTime; without one, it answers the latest `limit` candles
        return 200, inside[:limit] if start is not None else inside[-limit:]


def response(url: str, status: int, body: str, content_type: str, headers: Mapping[str, str] | None = None):
    """A real `requests.Response`, as ccxt reads it (status, reason, headers, text)."""
    r = requests.Response()
    r.status_code = status
    r.reason = http.HTTPStatus(status).phrase
    r.url = url
    r.encoding = "utf-8"
    r._content = body.encode("utf-8")
    r.headers = CaseInsensitiveDict({"Content-Type": content_type, **(headers or {})})
    return r


def failure_response(url: str, status: int, body: str | None = None):
    content_type, default = ERROR_BODIES.get(status, ("application/json;charset=UTF-8", '{"code":-1000,"msg":"error"}'))
    extra = {"Retry-After": "1"} if status in (418, 429) else {}
    return response(url, status, default if body is None else body, content_type, extra)


def replay_client(source: str | Path | RecordedBinance | Mapping[str, Any], **config: Any) -> Any:
    """A real `ccxt.binance` whose HTTP session is a `RecordedBinance` (a recorded folder, the
    recorder itself, or `RecordedBinance`'s keyword arguments). Its rate limiter is off: there is
    no venue to protect. The recorder is `client.session`."""
    ccxt = require("ccxt", "ccxt")
    if isinstance(source, RecordedBinance):
        recorder = source
    elif isinstance(source, Mapping):
        recorder = RecordedBinance(**source)
    else:
        recorder = RecordedBinance.from_folder(source)
    client = ccxt.binance({"enableRateLimit": False, **config})
    client.session = recorder
    return client


def _empty_info(like: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": like.get("serverTime"),
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [],
    }


def _as_rows(klines: Klines) -> list[list]:
    if isinstance(klines, pl.DataFrame):
        return kline_rows(klines)
    return sorted((list(r) for r in klines), key=lambda r: r[0])


def _read_klines(folder: Path) -> dict[str, Klines]:
    out: dict[str, Klines] = {}
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix == ".parquet":
                out[f.stem] = pl.read_parquet(f)
            elif f.suffix == ".json":
                out[f.stem] = json.loads(f.read_text())
    return out


# -- the synthetic example -----------------------------------------------------------------------

# base, Binance USDT listing day, price then, target annualised volatility. Real names and roughly
# real listing days; prices and paths are synthetic.
EXAMPLE_MARKETS: list[tuple[str, dt.date, float, float]] = [
    ("BTC", dt.date(2017, 8, 17), 3700.0, 0.55),
    ("ETH", dt.date(2017, 8, 17), 135.0, 0.70),
    ("BNB", dt.date(2017, 11, 6), 5.8, 0.70),
    ("XRP", dt.date(2018, 5, 4), 0.35, 0.80),
    ("ADA", dt.date(2018, 4, 17), 0.042, 0.85),
    ("DOGE", dt.date(2019, 7, 5), 0.0045, 0.95),
    ("SOL", dt.date(2020, 8, 11), 3.1, 1.00),
    ("TRX", dt.date(2018, 6, 11), 0.019, 0.75),
    ("DOT", dt.date(2020, 8, 18), 4.6, 0.90),
    ("LTC", dt.date(2017, 12, 13), 31.0, 0.75),
    ("LINK", dt.date(2019, 1, 16), 0.45, 0.90),
    ("MATIC", dt.date(2019, 4, 26), 0.021, 1.00),
    ("ATOM", dt.date(2019, 4, 29), 5.5, 0.85),
    ("AVAX", dt.date(2020, 9, 22), 4.9, 1.00),
    ("UNI", dt.date(2020, 9, 17), 3.2, 0.95),
    ("XLM", dt.date(2018, 5, 31), 0.11, 0.75),
    ("ETC", dt.date(2018, 6, 12), 4.9, 0.80),
    ("FIL", dt.date(2020, 10, 15), 30.0, 1.00),
]
INACTIVE_EXAMPLE = ("LUNA", dt.date(2020, 8, 21), 0.35, 1.00, dt.date(2022, 5, 12))  # trading halted after
FACTOR_VOL = 0.50  # the market factor's annualised volatility


def write_crypto_example(
    path: str | Path,
    start: dt.date = dt.date(2019, 1, 1),
    end: dt.date = dt.date(2022, 12, 31),
    n: int = 12,
    seed: int = 7,
) -> Path:
    """A folder `RecordedBinance.from_folder` serves: `exchangeInfo.json` and `ticker_24hr.json`
    shaped like Binance's recorded payloads, one entry per market (`n` USDT markets, two quoted in
    BTC and one halted market, which discovery must skip), and `klines/<MARKETID>.parquet`. Daily
    bars on every calendar day from max(start, listing day); quote volume from ~1e9 (first) to
    ~1e6 (last) a day. Deterministic in `seed`: writing twice gives the same files."""
    if not 3 <= n <= len(EXAMPLE_MARKETS):
        raise ValueError(f"n must be between 3 and {len(EXAMPLE_MARKETS)}, got {n}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    rng = np.random.default_rng(seed)
    days = pl.date_range(start, end, "1d", eager=True)
    factor = _student(rng, len(days)) * FACTOR_VOL / math.sqrt(365)
    usdt = EXAMPLE_MARKETS[:n]
    out = Path(path)
    (out / KLINES_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (out / KLINES_DIR).glob("*.parquet"):
        stale.unlink()

    frames: dict[str, pl.DataFrame] = {}
    ticks: dict[str, float] = {}
    for i, (base, listed, price, vol) in enumerate(usdt):
        quote_volume = 1e9 * 1e-3 ** (i / (n - 1))
        frames[f"{base}USDT"], ticks[f"{base}USDT"] = _market(rng, days, factor, listed, price, vol, quote_volume)
    luna, listed, price, vol, halted = INACTIVE_EXAMPLE
    frame, tick = _market(rng, days, factor, listed, price, vol, 3e7)
    frames[f"{luna}USDT"], ticks[f"{luna}USDT"] = frame.filter(pl.col("date") <= halted), tick
    btc = frames[f"{usdt[0][0]}USDT"]
    for base, _, _, _ in usdt[1:3]:
        frames[f"{base}{usdt[0][0]}"], ticks[f"{base}{usdt[0][0]}"] = _cross(frames[f"{base}USDT"], btc)

    symbols = []
    for market_id, frame in frames.items():
        frame.write_parquet(out / KLINES_DIR / f"{market_id}.parquet")
        base, quote = _split(market_id, usdt[0][0])
        status = "BREAK" if base == luna else "TRADING"
        symbols.append(_symbol_entry(market_id, base, quote, status, ticks[market_id], frame))
    server_time = ms_of(end) + DAY_MS
    info = {
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": symbols,
    }
    tickers = [_ticker(market_id, frames[market_id], end, i) for i, market_id in enumerate(frames)]
    (out / EXCHANGE_INFO).write_text(json.dumps(info, indent=1) + "\n")
    (out / TICKERS).write_text(json.dumps(tickers, indent=1) + "\n")
    return out


def _student(rng: np.random.Generator, size: int, df: float = 4.0) -> np.ndarray:
    """Unit-variance Student-t draws: crypto returns have fat tails."""
    return rng.standard_t(df, size) * math.sqrt((df - 2) / df)


def _tick(price: float) -> float:
    return 10.0 ** max(-8, math.floor(math.log10(price)) - 5)


def _market(
    rng: np.random.Generator,
    days: pl.Series,
    factor: np.ndarray,
    listed: dt.date,
    price: float,
    vol: float,
    quote_volume: float,
) -> tuple[pl.DataFrame, float]:
    """One market's daily bars: log returns beta x factor + idiosyncratic noise, scaled to `vol`."""
    daily_vol = vol / math.sqrt(365)
    factor_vol = FACTOR_VOL / math.sqrt(365)
    beta = rng.uniform(0.8, 1.2)
    idio = math.sqrt(max(daily_vol**2 - (beta * factor_vol) ** 2, (0.2 * daily_vol) ** 2))
    returns = beta * factor + idio * _student(rng, len(days))
    first = int(np.searchsorted(days.to_numpy(), np.datetime64(listed, "D"))) if listed > days[0] else 0
    returns = returns[first:] - 0.5 * daily_vol**2
    n = len(returns)
    tick = _tick(price)
    if n == 0:  # listed after the example ends
        return pl.DataFrame(schema=BAR_SCHEMA), tick
    close = price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[price], close[:-1]])  # 24/7: a day opens where the last one closed
    close, open_ = _on_tick(close, tick), _on_tick(open_, tick)
    reach = np.abs(rng.normal(0.0, 0.45 * daily_vol, (2, n)))
    high = np.ceil(np.maximum(open_, close) * np.exp(reach[0]) / tick) * tick
    low = np.maximum(np.floor(np.minimum(open_, close) * np.exp(-reach[1]) / tick) * tick, tick)
    high, low = np.round(high, 8), np.round(low, 8)
    activity = np.exp(rng.normal(0.0, 0.35, n) + 8.0 * np.abs(returns))  # busier on big moves
    activity /= activity.mean()
    volume = np.round(quote_volume * activity / ((high + low + close) / 3.0), 8)
    frame = pl.DataFrame(
        {"date": days[first:], "open": open_, "high": high, "low": low, "close": close, "volume": volume},
        schema=BAR_SCHEMA,
    )
    return frame, tick


def _on_tick(prices: np.ndarray, tick: float) -> np.ndarray:
    return np.round(np.maximum(np.round(prices / tick) * tick, tick), 8)


def _cross(base: pl.DataFrame, quote: pl.DataFrame) -> tuple[pl.DataFrame, float]:
    """A market quoted in another coin (ETHBTC): the cross of two USDT markets."""
    both = base.join(quote, on="date", suffix="_q")
    tick = _tick(float(both["close"][0] / both["close_q"][0]))
    o = _on_tick((both["open"] / both["open_q"]).to_numpy(), tick)
    c = _on_tick((both["close"] / both["close_q"]).to_numpy(), tick)
    h = np.maximum(np.maximum(o, c), _on_tick((both["high"] / both["close_q"]).to_numpy(), tick))
    lo = np.minimum(np.minimum(o, c), _on_tick((both["low"] / both["close_q"]).to_numpy(), tick))
    frame = pl.DataFrame(
        {"date": both["date"], "open": o, "high": h, "low": lo, "close": c, "volume": both["volume"] * 0.05},
        schema=BAR_SCHEMA,
    )
    return frame, tick


def _split(market_id: str, cross_quote: str) -> tuple[str, str]:
    for quote in ("USDT", cross_quote):
        if market_id.endswith(quote):
            return market_id[: -len(quote)], quote
    raise AssertionError(market_id)


def _decimals(step: float) -> int:
    return max(0, -int(math.floor(math.log10(step) + 1e-9)))


def _symbol_entry(market_id: str, base: str, quote: str, status: str, tick: float, bars: pl.DataFrame) -> dict:
    """An exchangeInfo symbol with the keys and filters of the recorded BTCUSDT entry."""
    last = float(bars["close"][-1]) if bars.height else 1.0
    step = min(1.0, max(1e-8, 10.0 ** math.floor(math.log10(1.0 / max(last, 1e-8)))))  # a lot worth < $1
    price_decimals, qty_decimals = min(8, _decimals(tick)), min(8, _decimals(step))
    fmt = "{:.8f}".format
    return {
        "symbol": market_id,
        "status": status,
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(round(tick, price_decimals)),
                "maxPrice": fmt(round(max(1000.0, last * 100), price_decimals)),
                "tickSize": fmt(round(tick, price_decimals)),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(round(step, qty_decimals)),
                "maxQty": "9000000.00000000",
                "stepSize": fmt(round(step, qty_decimals)),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100000.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000" if quote == "USDT" else "0.00010000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _ticker(market_id: str, bars: pl.DataFrame, end: dt.date, i: int) -> dict:
    """The 24 h ticker of the recorded payload's shape, from the market's last day up to `end`
    (zero volume for a market whose last bar is older: a halted market still has a ticker)."""
    fmt = "{:.8f}".format
    opened = ms_of(end)
    if bars.height and bars["date"][-1] == end:
        _, o, h, lo, c, v = bars.row(-1)
        prev = float(bars["close"][-2]) if bars.height > 1 else o
        quote = v * (h + lo + c) / 3.0
    else:
        c = float(bars["close"][-1]) if bars.height else 0.0
        o = h = lo = prev = c
        v = quote = 0.0
    trades = max(0, int(quote / 2500.0))
    first_id = 1_000_000 * (i + 1)
    return {
        "symbol": market_id,
        "priceChange": fmt(c - o),
        "priceChangePercent": f"{(c / o - 1) * 100 if o else 0.0:.3f}",
        "weightedAvgPrice": fmt(quote / v if v else c),
        "prevClosePrice": fmt(prev),
        "lastPrice": fmt(c),
        "lastQty": fmt(0.0),
        "bidPrice": fmt(c),
        "bidQty": fmt(0.0),
        "askPrice": fmt(c),
        "askQty": fmt(0.0),
        "openPrice": fmt(o),
        "highPrice": fmt(h),
        "lowPrice": fmt(lo),
        "volume": fmt(v),
        "quoteVolume": fmt(quote),
        "openTime": opened,
        "closeTime": opened + DAY_MS - 1,
        "firstId": first_id if trades else -1,
        "lastId": first_id + trades - 1 if trades else -1,
        "count": trades,
    }
