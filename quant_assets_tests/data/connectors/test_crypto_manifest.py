"""The shipped crypto and mixed manifests, end to end through Dagster on the recorded exchange
folder: ingest into the lakehouse, point-in-time listing, 24/7 annualisation, signed weights of
physical symbols, a second run that asks the exchange for nothing, and a root meta over an equity
and a crypto book that says what its join lost."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def shipped(name: str, tmp: Path, replay: Path, **calendar) -> object:
    from quant_assets.config.manifest import default_manifest_path, load_manifest

    spec = yaml.safe_load((default_manifest_path().parent / name).read_text())
    spec["sources"]["binance"]["replay"] = str(replay)
    spec["calendar"].update({k: str(v) for k, v in calendar.items()})
    path = tmp / name
    path.write_text(yaml.safe_dump(spec))
    return load_manifest(path)


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> Path:
    from quant_assets.data.connectors.replay import write_crypto_example

    return write_crypto_example(tmp_path_factory.mktemp("crypto"), start=dt.date(2019, 6, 1), end=dt.date(2021, 12, 31))


@pytest.fixture(scope="module")
def crypto_run(tmp_path_factory, replay):
    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.definitions import build_definitions

    tmp = tmp_path_factory.mktemp("crypto_run")
    manifest = shipped("crypto.yaml", tmp, replay, start=dt.date(2021, 1, 1), end=dt.date(2022, 1, 1))
    defs = build_definitions(manifest, str(tmp / "lh"))
    instance = ephemeral_instance()
    first = materialize_range(defs, manifest, dt.date(2021, 1, 1), dt.date(2021, 12, 31), instance, run_config=QUIET)
    second = materialize_range(
        defs,
        manifest,
        dt.date(2021, 1, 1),
        dt.date(2021, 12, 31),
        instance,
        run_config=QUIET,
        selection="group:market_data",
    )
    return manifest, tmp / "lh", first, second


def test_the_crypto_manifest_materialises_with_the_invariants(crypto_run):
    from quant_assets.data.calendars import rebalance_dates
    from quant_assets.storage.lakehouse import Lakehouse

    manifest, root, first, _ = crypto_run
    assert first.success
    assert all(e.passed for e in first.get_asset_check_evaluations())
    lh = Lakehouse(root)
    dates = rebalance_dates(manifest.calendar, dt.date(2021, 12, 31))
    assert len(dates) == 36 and all((b - a).days == 10 for a, b in zip(dates, dates[1:]))
    sums = lh.sql("SELECT rebalance_date, risk, sum(weight) AS s FROM meta_weights GROUP BY ALL")
    assert sums.height == 3 * len(dates)
    np.testing.assert_allclose(sums["s"].to_numpy(), 1.0, atol=1e-9)
    weights = lh.sql("SELECT sleeve, weight, net_weight FROM sleeve_weights WHERE weight > 0")
    longs = weights.filter(weights["sleeve"] == "trend_long")["net_weight"].to_numpy()
    shorts = weights.filter(weights["sleeve"] == "trend_short")["net_weight"].to_numpy()
    assert (longs > 0).all() and (shorts < 0).all() and len(longs) and len(shorts)
    flat = lh.sql("SELECT DISTINCT symbol FROM flattened_weights")["symbol"].to_list()
    listed = set(lh.sql("SELECT symbol FROM listings")["symbol"])
    assert flat and set(flat) <= listed and all(s.startswith("BINANCE:") and s.endswith("USDT") for s in flat)


def test_discovery_is_point_in_time_and_ranked_by_value_traded(crypto_run):
    from quant_assets.storage.lakehouse import Lakehouse

    _, root, _, _ = crypto_run
    lh = Lakehouse(root)
    per_date = lh.sql("SELECT rebalance_date, count(*) AS n, max(first_date) AS last_listed FROM candidates GROUP BY 1")
    assert (per_date["n"] <= 8).all() and (per_date["n"] == 8).any()  # top_n: 8
    assert (per_date["last_listed"] <= per_date["rebalance_date"]).all()
    # the halted market and the BTC-quoted ones are never discovered
    assert lh.sql("SELECT count(*) AS n FROM listings WHERE symbol NOT LIKE '%USDT'")["n"][0] == 0
    # a market listed in August 2020 (SOL in the example) is a candidate only after it has bars
    sol = lh.sql(
        "SELECT min(rebalance_date) AS d, min(first_date) AS f FROM candidates WHERE symbol = 'BINANCE:SOLUSDT'"
    )
    assert sol["f"][0] == dt.date(2020, 8, 11) and sol["d"][0] >= sol["f"][0]


def test_features_annualise_over_365_days_and_read_the_bars(crypto_run):
    from quant_assets.storage.lakehouse import Lakehouse

    manifest, root, _, _ = crypto_run
    lh = Lakehouse(root)
    d = dt.date(2021, 12, 17)  # the last of the 36 dates
    f = lh.sql(f"SELECT symbol, volatility, adx, adv, liquidity FROM features WHERE rebalance_date = '{d}'")
    assert f.height and f["adx"].is_not_null().all() and f["adv"].is_not_null().all()
    np.testing.assert_allclose(f["liquidity"].to_numpy(), np.minimum(1.0, f["adv"].to_numpy() / 1e7))
    # volatility: sample std of the last 90 daily returns up to D, times sqrt(365)
    sym = f["symbol"][0]
    r = lh.sql(f"SELECT ret FROM returns WHERE symbol = '{sym}' AND date <= '{d}' ORDER BY date DESC LIMIT 90")[
        "ret"
    ].to_numpy()
    assert math.isclose(f["volatility"][0], r.std(ddof=1) * math.sqrt(365), rel_tol=1e-9)
    # adv: mean close x volume of the last 20 days up to D, from the stored bars
    bars = lh.sql(
        f"SELECT close * volume AS v FROM bars WHERE symbol = '{sym}' AND date <= '{d}' ORDER BY date DESC LIMIT 20"
    )["v"].to_numpy()
    assert math.isclose(f["adv"][0], bars.mean(), rel_tol=1e-9)


def test_a_second_run_asks_the_exchange_for_nothing_new(crypto_run):
    from quant_assets.storage.lakehouse import Lakehouse

    _, root, first, second = crypto_run
    assert second.success
    log = Lakehouse(root).sql("SELECT synced_at, status, count(*) AS n FROM ingest_log GROUP BY ALL ORDER BY synced_at")
    assert log["status"].to_list() == ["ok", "up_to_date"] and log["n"].to_list() == [12, 12]
    md = {
        k: v.value
        for e in second.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "prices_binance_spot"
        for k, v in e.step_materialization_data.materialization.metadata.items()
    }
    assert md["ingest_binance"]["up_to_date"] == 12 and md["ingest_binance"]["bars"] == 0


def test_a_root_meta_over_stocks_and_crypto_says_what_its_join_lost(tmp_path, replay):
    from dagster import AssetKey

    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.definitions import build_definitions
    from quant_assets.storage.lakehouse import Lakehouse

    manifest = shipped("mixed.yaml", tmp_path, replay, start=dt.date(2021, 7, 2), end=dt.date(2022, 1, 1))
    defs = build_definitions(manifest, str(tmp_path / "lh"))
    instance = ephemeral_instance()
    result = materialize_range(defs, manifest, dt.date(2021, 7, 1), dt.date(2021, 12, 31), instance, run_config=QUIET)
    assert result.success
    md = instance.get_latest_materialization_event(AssetKey("meta_weights_total_hrp")).asset_materialization.metadata
    lost, why = md["join_lost_days_last_date"].value, md["join_lost_why"].value
    assert (
        lost > 0
        and why.startswith(f"equity_book has no return on {lost} of the")
        and "(trades on XNYS); the others' returns" in why
    )
    crypto_md = instance.get_latest_materialization_event(AssetKey("meta_weights_crypto_book_hrp"))
    assert crypto_md.asset_materialization.metadata["join_lost_why"].value == "no day lost"
    flat = Lakehouse(tmp_path / "lh").sql(
        "SELECT rebalance_date, sum(net_weight) AS net, sum(long_weight) + sum(short_weight) AS gross, "
        "count_if(symbol LIKE 'BINANCE:%') AS crypto, count_if(symbol NOT LIKE 'BINANCE:%') AS stocks "
        "FROM flattened_weights WHERE meta = 'total' AND risk = 'hrp' GROUP BY 1"
    )
    assert flat.height and (flat["crypto"] > 0).all() and (flat["stocks"] > 0).all()
