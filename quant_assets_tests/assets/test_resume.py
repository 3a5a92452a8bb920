"""The weekly update keeps the dates whose inputs did not change, and ends where a full run ends.

Two lakehouses, monthly partitions January-March 2020, the whole graph. In one, history is built
with the calendar ending a week earlier (March holds 6, 13, 20 March), then March is
re-materialised with the full calendar (27 March appended): the update. The other is built with
the full calendar in one run. Every row of every table must be equal, exactly; the update must have
kept the stored rows of the dates before the first changed one (20 March: its horizon moved from
"every row" to 27 March) in the steps that resume (a universe's features and regime, funnels,
sleeves, metas), and a re-run with nothing changed keeps every date but the last."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.cli.runner import dates_kept, materialize_range
from quant_assets.config.manifest import load_manifest, parse_manifest
from quant_assets.data import sources
from quant_assets.definitions import build_definitions
from quant_assets.storage.lakehouse import Lakehouse
from quant_assets.storage.schemas import TABLES

pytestmark = pytest.mark.slow  # materialises graphs: `make test-fast` skips it

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
MARCH = (dt.date(2020, 3, 1), dt.date(2020, 3, 31))
# every table the default graph writes (no connector store, no tournament opted in; orders need your CSV)
COMPARED = [
    t for t in TABLES if t not in ("bars", "ingest_log", "listings", "tournament_weights", "tournament_returns")
]
# the assets that compute every date (a universe's market data: it reads its price source; the orders)
UNIVERSE_STEP = ("candidates_", "prices_", "returns_", "rebalance_orders_")


def _graph(root, end: str):
    data = load_manifest().model_dump(mode="json")
    data["calendar"].update(start="2020-01-01", end=end, partition="month")
    data["lookbacks"]["meta_min_history_days"] = 10
    manifest = parse_manifest(data)
    return build_definitions(manifest, root), manifest


def _kept(result) -> dict[str, int]:
    """dates_kept_as_stored of every asset the run materialised (0: it computed every date)."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        value = mat.metadata.get("dates_kept_as_stored")
        out[mat.asset_key.to_user_string()] = value.value if value is not None else 0
    return out


def _history(root, end: str, instance):
    """January-March 2020 materialised in one run, the calendar ending at `end`."""
    defs, manifest = _graph(root, end)
    assert materialize_range(defs, manifest, dt.date(2020, 1, 1), MARCH[1], instance, run_config=QUIET).success
    return defs, manifest


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    updated_root, full_root = tmp_path_factory.mktemp("updated"), tmp_path_factory.mktemp("full")
    instance = ephemeral_instance()
    _history(updated_root, "2020-03-27", instance)  # 27 March is not a rebalance date yet
    defs, manifest = _graph(updated_root, "2020-04-04")
    update = materialize_range(defs, manifest, *MARCH, instance, run_config=QUIET)
    assert update.success
    _history(full_root, "2020-04-04", ephemeral_instance())
    again = materialize_range(defs, manifest, *MARCH, instance, run_config=QUIET)
    assert again.success
    yield Lakehouse(updated_root), Lakehouse(full_root), _kept(update), _kept(again), dates_kept(update)


def _rows(lh: Lakehouse, table: str) -> pd.DataFrame:
    return lh.sql(f"SELECT * FROM {table} ORDER BY ALL").to_pandas()


@pytest.mark.parametrize("table", COMPARED)
def test_an_updated_partition_equals_the_one_a_full_run_writes(worlds, table):
    updated, full, *_ = worlds
    a, b = _rows(updated, table), _rows(full, table)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)


def test_the_update_kept_the_dates_before_the_first_changed_one(worlds):
    _, _, kept, _, _ = worlds
    resumed = {k: v for k, v in kept.items() if not k.startswith(UNIVERSE_STEP)}
    assert resumed and set(resumed.values()) == {2}, resumed  # 6 and 13 March kept; 20 and 27 computed
    assert all(v == 0 for k, v in kept.items() if k not in resumed)  # the steps that do not resume
    assert worlds[4] == {2: len(resumed)}  # what `quant-assets backfill` prints


def test_a_rerun_with_nothing_changed_computes_only_the_last_date(worlds):
    _, _, _, again, _ = worlds
    resumed = {k: v for k, v in again.items() if not k.startswith(UNIVERSE_STEP)}
    assert resumed and set(resumed.values()) == {3}, resumed


# ---- a revised upstream: the dates whose inputs it reaches are recomputed ------------------

REVISED_FROM = dt.date(2020, 3, 16)  # after 13 March, before 20 March


class RevisedSP500(sources.SkfolioSP500Source):
    """The bundled S&P 500 stocks with every close from REVISED_FROM on restated (a vendor's fix),
    and the first stock's close of 17 March restated seven-fold (a toxic move: its health verdict on
    20 March changes, not only its numbers)."""

    @staticmethod
    def _load() -> pd.DataFrame:
        frame = sources.SkfolioSP500Source._load().copy()
        late = frame.index >= pd.Timestamp(REVISED_FROM)
        frame.loc[late] = frame.loc[late].to_numpy() * np.linspace(0.9, 1.1, frame.shape[1])
        frame.loc[pd.Timestamp("2020-03-17"), frame.columns[0]] *= 7.0
        return frame


@pytest.fixture(scope="module")
def revised(tmp_path_factory):
    """History with the bundled closes, then March updated after the source restated its closes
    from 16 March on (same manifest, same source name); and a full run on the restated closes."""
    updated_root, full_root = tmp_path_factory.mktemp("revised_update"), tmp_path_factory.mktemp("revised_full")
    instance = ephemeral_instance()
    defs, manifest = _history(updated_root, "2020-04-04", instance)
    original = sources.SOURCES["skfolio_sp500"]
    sources.SOURCES["skfolio_sp500"] = RevisedSP500
    try:
        update = materialize_range(defs, manifest, *MARCH, instance, run_config=QUIET)
        assert update.success
        _history(full_root, "2020-04-04", ephemeral_instance())
    finally:
        sources.SOURCES["skfolio_sp500"] = original
    yield Lakehouse(updated_root), Lakehouse(full_root), _kept(update)


@pytest.mark.parametrize("table", COMPARED)
def test_after_a_restated_source_the_update_equals_a_full_run_on_it(revised, table):
    updated, full, _ = revised
    a, b = _rows(updated, table), _rows(full, table)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)


def test_a_restated_source_recomputes_from_the_first_date_whose_horizon_reaches_it(revised):
    _, _, kept = revised
    # 6 March (horizon 13 March) kept; 13 March (horizon 20 March) and later recomputed. The stocks'
    # sleeves and metas see the restatement; the ETFs' funnel and sleeve read nothing restated.
    stocks = {k: v for k, v in kept.items() if not k.startswith(UNIVERSE_STEP) and "factor" not in k}
    assert stocks and set(stocks.values()) == {1}, stocks


@pytest.fixture(scope="module")
def revised_by_a_subset(revised, tmp_path_factory):
    """The restatement seen first by a subset (the stocks' prices, features and regime, not their returns
    and health verdicts), then by the full update: the features the subset computed on stale
    verdicts must not be kept."""
    root = tmp_path_factory.mktemp("revised_subset")
    instance = ephemeral_instance()
    defs, manifest = _history(root, "2020-04-04", instance)
    original = sources.SOURCES["skfolio_sp500"]
    sources.SOURCES["skfolio_sp500"] = RevisedSP500
    try:
        subset = "key:prices_us_large_caps or key:features_us_large_caps or key:regime_us_large_caps"
        assert materialize_range(defs, manifest, *MARCH, instance, selection=subset, run_config=QUIET).success
        after_subset = {t: _rows(Lakehouse(root), t) for t in ("features", "regime")}
        assert materialize_range(defs, manifest, *MARCH, instance, run_config=QUIET).success
    finally:
        sources.SOURCES["skfolio_sp500"] = original
    yield Lakehouse(root), revised[1], after_subset


@pytest.mark.parametrize("table", ["returns_health", "features", "regime", "selection", "sleeve_weights"])
def test_a_subset_that_saw_a_restatement_first_leaves_nothing_stale(revised_by_a_subset, table):
    updated, full, _ = revised_by_a_subset
    pd.testing.assert_frame_equal(_rows(updated, table), _rows(full, table), check_exact=True, obj=table)


@pytest.mark.parametrize("table", ["features", "regime"])
def test_a_subset_without_the_returns_judges_the_new_prices_health_itself(revised_by_a_subset, table):
    _, full, after_subset = revised_by_a_subset
    pd.testing.assert_frame_equal(after_subset[table], _rows(full, table), check_exact=True, obj=table)
