"""Point-in-time property: rewriting history *after* date D changes nothing stored for dates <= D.

Two lakehouses are built from the same manifest (monthly partitions, January-March 2020, the whole
graph in one run); in one, the stock source's closes after D are multiplied by random factors
(including +300% days). D falls inside a partition: every row of every table for rebalance dates
<= D (daily tables: dates <= D) must be byte-for-byte equal, although the partition holding D was
computed in the same pass as the dates after it; the first date after D must differ (the
perturbation is real, not filtered out somewhere)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.cli.runner import materialize_range
from quant_assets.config.manifest import load_manifest, parse_manifest
from quant_assets.data import sources
from quant_assets.definitions import build_definitions
from quant_assets.storage.lakehouse import Lakehouse

pytestmark = pytest.mark.slow  # materialises graphs: `make test-fast` skips it

CUT = dt.date(2020, 2, 21)
AFTER = dt.date(2020, 2, 28)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
TABLES = [
    "candidates",
    "prices",
    "returns",
    "returns_health",
    "features",
    "regime",
    "clusters",
    "cluster_sensitivity",
    "rankings",
    "vetoes",
    "selection",
    "sleeve_weights",
    "sleeve_returns",
    "meta_returns",
    "meta_weights",
    "meta_cluster_tree",
    "meta_portfolio_returns",
    "flattened_weights",
    "flattened_contributions",
    "rebalance_orders",
]


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
    data["calendar"].update(start="2020-01-01", end="2020-04-04", partition="month")
    data["lookbacks"]["meta_min_history_days"] = 10
    manifest = parse_manifest(data)
    defs = build_definitions(manifest, root)
    assert materialize_range(
        defs, manifest, dt.date(2020, 1, 1), dt.date(2020, 3, 31), ephemeral_instance(), run_config=QUIET
    ).success
    return Lakehouse(root)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    sources.SOURCES[RewrittenFutureSource.name] = RewrittenFutureSource
    try:
        yield (
            _world(tmp_path_factory.mktemp("true"), "skfolio_sp500"),
            _world(tmp_path_factory.mktemp("rewritten"), RewrittenFutureSource.name),
        )
    finally:
        sources.SOURCES.pop(RewrittenFutureSource.name, None)


def _frame(lh: Lakehouse, table: str, last: dt.date) -> pd.DataFrame:
    column = "date" if table in ("prices", "returns") else "rebalance_date"
    frame = lh.sql(f"SELECT * FROM {table} WHERE {column} <= '{last}' ORDER BY ALL").to_pandas()
    return frame.drop(columns=[c for c in ("metadata",) if c in frame.columns])  # names the source, by design


@pytest.mark.parametrize("table", TABLES)
def test_rows_up_to_the_cut_ignore_a_rewritten_future(worlds, table):
    true, rewritten = worlds
    a, b = _frame(true, table, CUT), _frame(rewritten, table, CUT)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)


def test_the_rewritten_future_is_visible_after_the_cut(worlds):
    true, rewritten = worlds
    q = (
        f"SELECT symbol, momentum FROM features WHERE rebalance_date = '{AFTER}' AND universe='us_large_caps' "
        f"AND symbol <> 'INDEX:SP500' ORDER BY symbol"
    )
    a, b = true.sql(q).to_pandas(), rewritten.sql(q).to_pandas()
    assert list(a["symbol"]) == list(b["symbol"])
    assert (a["momentum"] - b["momentum"]).abs().max() > 0.1
    w = "SELECT atom_id, weight FROM sleeve_weights WHERE rebalance_date = '2020-03-27' AND risk = 'hrp' ORDER BY ALL"
    assert not true.sql(w).to_pandas().equals(rewritten.sql(w).to_pandas())
