"""Live market-data connectors and the ingest store the graph reads them through.

* `base`: the `Connector` contract (listings, daily bars), retries with backoff, `FetchFailed`;
* `ccxt_connector`, `yfinance_connector`, `tradingview_connector`: one vendor each, their library
  imported only when a manifest uses them (optional extras);
* `screened`: a universe screened by one vendor (TradingView) and priced by another;
* `replay`: an exchange's HTTP API served from recorded responses (tests and the crypto example);
* `store`: the incremental ingest into the lakehouse (`bars`, `ingest_log`, `listings`) and the
  `ConnectorSource` that answers the graph's point-in-time questions from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quant_assets.data.connectors.base import Connector
    from quant_assets.data.connectors.store import ConnectorSource


def build_connector(cfg, priced_by=None) -> Connector:
    """The connector a manifest source describes (`cfg`: a ccxt, yfinance or tradingview source
    config; `priced_by`: the config of the source a tradingview screen takes its bars from)."""
    if cfg.kind == "ccxt":
        from quant_assets.data.connectors.ccxt_connector import CcxtConnector

        client = None
        if cfg.replay:
            from quant_assets.data.connectors.replay import replay_client

            client = replay_client(cfg.replay)
        return CcxtConnector(
            exchange=cfg.exchange,
            quote=cfg.quote,
            min_quote_volume=cfg.min_quote_volume,
            pool=cfg.pool,
            market_types=tuple(cfg.market_types),
            client=client,
        )
    if cfg.kind == "yfinance":
        from quant_assets.data.connectors.yfinance_connector import YFinanceConnector

        return YFinanceConnector(
            list(cfg.tickers), exchange=cfg.exchange, exchanges=dict(cfg.exchanges), asset_type=cfg.asset_type
        )
    if cfg.kind == "tradingview":
        from quant_assets.data.connectors.screened import Screened
        from quant_assets.data.connectors.tradingview_connector import TradingViewConnector

        screener = TradingViewConnector(
            market=cfg.market,
            columns=cfg.columns,
            filters=list(cfg.filters),
            sort_by=cfg.sort_by,
            ascending=cfg.ascending,
            limit=cfg.limit,
            asset_type=cfg.asset_type,
        )
        return Screened(screener, build_connector(priced_by))
    raise ValueError(f"no connector of kind {cfg.kind!r}")


def connector_source(name: str, cfg, root: str, priced_by=None) -> ConnectorSource:
    """One ConnectorSource per (name, configuration, lakehouse) and process: the connector and its
    store's in-memory cache are built once."""
    key = cfg.model_dump_json() + (priced_by.model_dump_json() if priced_by is not None else "")
    return _source(name, key, root, cfg, priced_by)


_SOURCES: dict[tuple[str, str, str], ConnectorSource] = {}


def _source(name: str, key: str, root: str, cfg, priced_by) -> ConnectorSource:
    from quant_assets.data.connectors.store import ConnectorSource

    if (name, key, root) not in _SOURCES:
        _SOURCES[name, key, root] = ConnectorSource(
            name,
            build_connector(cfg, priced_by),
            root,
            top_n=cfg.top_n,
            adv_days=cfg.adv_days,
            overlap_days=cfg.overlap_days,
            history_start=cfg.history_start,
        )
    return _SOURCES[name, key, root]
