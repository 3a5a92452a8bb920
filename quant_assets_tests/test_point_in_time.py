"""Point-in-time property: rewriting history *after* date D changes nothing a partition <= D stored.

Two lakehouses are built from the same manifest; in one, the stock source's closes after D are
multiplied by random factors (including +300% days). Every selection-funnel table for partitions
<= D must be byte-for-byte equal; the first partition after D must differ (the perturbation is
real, not filtered out somewhere)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from quant_assets import sources
from quant_assets.definitions import build_definitions
from quant_assets.lakehouse import Lakehouse
from quant_assets.manifest import load_manifest, parse_manifest
from quant_assets.runner import materialize_range

CUT = dt.date(2020, 2, 21)
BEFORE = (dt.date(2020, 2, 7), CUT)
AFTER = dt.date(2020, 2, 28)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
FUNNEL = "group:market_data or group:selection"
TABLES = ["candidates", "prices", "returns", "returns_health", "features", "regime", "clusters",
          "cluster_sensitivity", "rankings", "vetoes", "selection"]


class RewrittenFutureSource(sources.SkfolioSP500Source):
    """The bundled S&P 500 stocks with every close after CUT scrambled."""

    name = "sp500_rewritten_after_cut"

    @staticmethod
    def _load() -> pd.DataFrame:
        frame = sources.SkfolioSP500Source._load().copy()
        late = frame.index > pd.Timestamp(CUT)
        rng = np.random.default_rng(7)
        shock = rng.choice([0.5, 0.9, 1.1, 4.0], size=(late.sum(), frame.shape[1]))
        frame.loc[late] = frame.loc[late].to_numpy() * np.cumprod(shock, axis=0) ** 0.1
        return frame


def _world(root, source: str):
    data = load_manifest().model_dump(mode="json")
    data["universes"]["us_large_caps"]["source"] = source
    manifest = parse_manifest(data)
    defs = build_definitions(manifest, root)
    instance = DagsterInstance.ephemeral()
    for start, end in (BEFORE, (AFTER, AFTER)):
        assert materialize_range(defs, manifest, start, end, instance, selection=FUNNEL, run_config=QUIET).success
    return Lakehouse(root)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    sources.SOURCES[RewrittenFutureSource.name] = RewrittenFutureSource
    try:
        yield (_world(tmp_path_factory.mktemp("true"), "skfolio_sp500"),
               _world(tmp_path_factory.mktemp("rewritten"), RewrittenFutureSource.name))
    finally:
        sources.SOURCES.pop(RewrittenFutureSource.name, None)


def _frame(lh: Lakehouse, table: str, last: dt.date) -> pd.DataFrame:
    frame = lh.sql(f"SELECT * FROM {table} WHERE rebalance_date <= '{last}' ORDER BY ALL").to_pandas()
    return frame.drop(columns=[c for c in ("metadata",) if c in frame.columns])  # names the source, by design


@pytest.mark.parametrize("table", TABLES)
def test_partitions_up_to_the_cut_ignore_a_rewritten_future(worlds, table):
    true, rewritten = worlds
    a, b = _frame(true, table, CUT), _frame(rewritten, table, CUT)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)


def test_the_rewritten_future_is_visible_after_the_cut(worlds):
    true, rewritten = worlds
    q = f"SELECT symbol, momentum FROM features WHERE rebalance_date = '{AFTER}' AND universe='us_large_caps' " \
        f"AND symbol <> 'INDEX:SP500' ORDER BY symbol"
    a, b = true.sql(q).to_pandas(), rewritten.sql(q).to_pandas()
    assert list(a["symbol"]) == list(b["symbol"])
    assert (a["momentum"] - b["momentum"]).abs().max() > 0.1
