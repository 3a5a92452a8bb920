"""Recursion beyond the default manifest: three nested metas, materialised end to end."""

import datetime as dt

import numpy as np
import pytest

from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.cli.runner import materialize_range
from quant_assets.config.manifest import load_manifest, parse_manifest
from quant_assets.definitions import build_definitions
from quant_assets.storage.lakehouse import Lakehouse

pytestmark = pytest.mark.slow  # materialises graphs: `make test-fast` skips it


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    data = load_manifest().model_dump(mode="json")
    for sleeve in data["sleeves"].values():
        sleeve["risk_profiles"] = ["hrp"]
    data["lookbacks"]["meta_min_history_days"] = 10
    data["calendar"].update(start="2019-01-01", end="2019-03-02", partition="month")
    data["metas"] = {
        "longs": {"children": ["sleeve:trend_long", "sleeve:reversion_long"], "allocation": {"profile": "hrp"}},
        "stocks": {"children": ["meta:longs", "sleeve:trend_short"], "allocation": {"profile": "min_variance"}},
        "top": {"children": ["meta:stocks", "sleeve:factor_rotation"], "min_weight": 0.2, "max_weight": 0.8},
    }
    manifest = parse_manifest(data)
    root = tmp_path_factory.mktemp("deep")
    result = materialize_range(
        build_definitions(manifest, root),
        manifest,
        dt.date(2019, 1, 1),
        dt.date(2019, 2, 28),
        ephemeral_instance(),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    return result, Lakehouse(root)


def test_three_levels_materialise_and_flatten_to_symbols(deep):
    result, lh = deep
    assert result.success
    paths = lh.sql("SELECT DISTINCT path FROM flattened_contributions WHERE meta = 'top'")["path"].to_list()
    assert "top/stocks/longs/trend_long" in paths and "top/factor_rotation" in paths
    flat = lh.sql(
        "SELECT rebalance_date, sum(long_weight + short_weight) AS gross FROM flattened_weights "
        "WHERE meta = 'top' GROUP BY ALL"
    ).to_pandas()
    np.testing.assert_allclose(flat["gross"], 1.0, atol=1e-9)


def test_each_level_sees_its_child_meta_portfolio_stream(deep):
    _, lh = deep
    children = lh.sql("SELECT DISTINCT child FROM meta_returns WHERE meta = 'stocks'")["child"].to_list()
    assert sorted(children) == ["longs", "trend_short"]
    # the stream 'stocks' sees for 'longs' is longs' own portfolio return, day by day
    seen = (
        lh.sql(
            "SELECT date, ret FROM meta_returns WHERE meta = 'stocks' AND child = 'longs' "
            "AND rebalance_date <= '2019-02-22' ORDER BY date"
        )
        .to_pandas()
        .set_index("date")["ret"]
    )
    own = (
        lh.sql(
            "SELECT date, ret FROM meta_portfolio_returns WHERE meta = 'longs' AND rebalance_date <= '2019-02-22'"
            " ORDER BY date"
        )
        .to_pandas()
        .set_index("date")["ret"]
    )
    assert len(seen) > 20
    np.testing.assert_allclose(seen.to_numpy(), own.reindex(seen.index).to_numpy(), atol=0)
    optimised = lh.sql("SELECT count(*) AS n FROM meta_weights WHERE meta = 'top' AND status = 'optimised'")["n"][0]
    assert optimised > 0
