"""The step helpers every asset body shares: grouping stored rows by date without a frame per date."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from quant_assets.assets.common import add_partitions_metadata, date_runs

D1, D2, D3 = dt.date(2020, 1, 3), dt.date(2020, 1, 10), dt.date(2020, 1, 17)


def _groups(frame: pl.DataFrame) -> list[tuple[dt.date, list[str]]]:
    """What the steps looped over before: one frame per date, in order of first appearance."""
    return [
        (g["rebalance_date"][0], g["symbol"].to_list())
        for g in frame.partition_by("rebalance_date", maintain_order=True)
    ]


def test_runs_are_each_dates_rows_in_stored_order():
    frame = pl.DataFrame({"rebalance_date": [D1, D1, D2, D3, D3, D3], "symbol": ["A", "B", "C", "A", "B", "C"]})
    same, runs = date_runs(frame)
    assert same is frame
    assert runs == [(D1, 0, 2), (D2, 2, 3), (D3, 3, 6)]
    symbols = frame["symbol"].to_list()
    assert [(d, symbols[a:b]) for d, a, b in runs] == _groups(frame)


def test_a_date_split_across_the_frame_is_regrouped_in_first_appearance_order():
    frame = pl.DataFrame({"rebalance_date": [D2, D1, D2, D1, D3], "symbol": ["C", "A", "D", "B", "E"]})
    regrouped, runs = date_runs(frame)
    symbols = regrouped["symbol"].to_list()
    assert (
        [(d, symbols[a:b]) for d, a, b in runs]
        == _groups(frame)
        == [
            (D2, ["C", "D"]),
            (D1, ["A", "B"]),
            (D3, ["E"]),
        ]
    )


def test_no_rows_no_runs():
    empty = pl.DataFrame(schema={"rebalance_date": pl.Date, "symbol": pl.Utf8})
    assert date_runs(empty)[1] == []


def test_missing_dates_are_one_group_as_partition_by_makes_them():
    frame = pl.DataFrame({"rebalance_date": [None, None, D1, None], "symbol": ["A", "B", "C", "D"]})
    regrouped, runs = date_runs(frame)
    symbols = regrouped["symbol"].to_list()
    assert [(d, symbols[a:b]) for d, a, b in runs] == _groups(frame) == [(None, ["A", "B", "D"]), (D1, ["C"])]


def test_candidate_sets_split_members_and_benchmarks_per_date_sorted():
    from quant_assets.assets.market_data import candidate_sets

    cands = pl.DataFrame(
        {
            "rebalance_date": [D1, D1, D1, D2, D2, D1],
            "symbol": ["B", "SPY", "A", "C", "X", "N"],
            "is_benchmark": [False, True, False, False, None, False],
        }
    )
    assert candidate_sets(cands) == {D1: (["A", "B", "N"], ["SPY"]), D2: (["C"], [])}  # no flag: neither


# ---- Run.write: rows to their partitions -----------------------------------------------


def _run(tmp_path, keys: list[str]):
    from quant_assets.assets.common import GraphContext, Run
    from quant_assets.config.manifest import load_manifest
    from quant_assets.storage.lakehouse import Lakehouse

    return Run(context=None, graph=GraphContext.of(load_manifest()), lh=Lakehouse(tmp_path), keys=keys)  # type: ignore[arg-type]


def _meta_weights(dates: list[dt.date]) -> pl.DataFrame:
    """meta_weights rows, one per date, the weight telling them apart."""
    from quant_assets.storage.schemas import TABLES

    schema = TABLES["meta_weights"].schema
    values = {pl.Utf8: "x", pl.Float64: 0.5, pl.Int64: 1, pl.Boolean: False}
    frame = pl.DataFrame(
        {c: [values.get(t, None)] * len(dates) for c, t in schema.items() if c != "rebalance_date"},
        schema_overrides={c: t for c, t in schema.items() if c != "rebalance_date"},
    )
    return frame.with_columns(
        pl.Series("rebalance_date", dates, dtype=pl.Date), pl.Series("weight", [i / 10 for i in range(len(dates))])
    )


def _stored(run, key: str) -> list[tuple[dt.date, float]]:
    part = pl.read_parquet(run.lh.path("meta_weights", "meta_weights_m_r", key))
    return list(zip(part["rebalance_date"].to_list(), part["weight"].to_list()))


A, B, C = dt.date(2020, 3, 6), dt.date(2020, 12, 25), dt.date(2021, 1, 8)


def test_write_puts_each_row_in_the_partition_of_its_date_in_order(tmp_path):
    run = _run(tmp_path, ["2020", "2021"])
    parts = run.write("meta_weights", "meta_weights_m_r", _meta_weights([B, C, A]), meta="m", risk="r")
    assert _stored(run, "2020") == [(B, 0.0), (A, 0.2)]
    assert _stored(run, "2021") == [(C, 0.1)]
    assert parts["2020"]["meta"].to_list() == ["m", "m"]


def test_rows_of_one_partition_fill_it_and_empty_the_others(tmp_path):
    run = _run(tmp_path, ["2020", "2021"])
    run.write("meta_weights", "meta_weights_m_r", _meta_weights([C]), meta="m", risk="r")
    assert _stored(run, "2020") == []
    assert _stored(run, "2021") == [(C, 0.0)]
    one = _run(tmp_path / "one", ["2020"])
    one.write("meta_weights", "meta_weights_m_r", _meta_weights([B, A]), meta="m", risk="r")
    assert _stored(one, "2020") == [(B, 0.0), (A, 0.1)]


@pytest.mark.parametrize("dates", [[C], [A, C]], ids=["all-outside", "one-outside"])
def test_a_row_outside_the_runs_partitions_is_refused_and_nothing_written(tmp_path, dates):
    run = _run(tmp_path, ["2020"])
    with pytest.raises(RuntimeError, match=r"meta_weights_m_r: rows dated in partitions \['2021'\]"):
        run.write("meta_weights", "meta_weights_m_r", _meta_weights(dates), meta="m", risk="r")
    assert not run.lh.path("meta_weights", "meta_weights_m_r", "2020").exists()


def test_rows_without_a_date_are_refused_naming_the_asset(tmp_path):
    run = _run(tmp_path, ["2020"])
    frame = _meta_weights([A, B]).with_columns(pl.Series("rebalance_date", [A, None], dtype=pl.Date))
    with pytest.raises(RuntimeError, match="meta_weights_m_r: 1 of 2 rows have no rebalance_date"):
        run.write("meta_weights", "meta_weights_m_r", frame, meta="m", risk="r")
    assert not run.lh.path("meta_weights", "meta_weights_m_r", "2020").exists()


# ---- Run.write resuming: the stored rows before `start` kept ----------------------------

A2, A3 = dt.date(2020, 3, 13), dt.date(2020, 3, 20)


def test_a_resumed_write_keeps_the_stored_rows_before_its_start_and_replaces_the_rest(tmp_path):
    run = _run(tmp_path, ["2020"])
    run.write("meta_weights", "meta_weights_m_r", _meta_weights([A, A2, A3]), meta="m", risk="r")
    resumed = _run(tmp_path, ["2020"])
    resumed.start = A2
    new = _meta_weights([A, A2, A3, B]).with_columns(pl.Series("weight", [9.0, 0.7, 0.8, 0.9]))
    parts = resumed.write("meta_weights", "meta_weights_m_r", new, meta="m", risk="r")
    # A kept as stored (0.0), not the frame's 9.0; A2 on recomputed
    assert _stored(resumed, "2020") == [(A, 0.0), (A2, 0.7), (A3, 0.8), (B, 0.9)]
    assert parts["2020"].height == 4
    report = _run(tmp_path, ["2020"])
    report.start = A3
    one = pl.DataFrame({"rebalance_date": [B], "markdown": ["# B"]})
    report.write("meta_report", "meta_report_m_r", one, keep=False, meta="m", risk="r")
    assert pl.read_parquet(report.lh.path("meta_report", "meta_report_m_r", "2020"))["rebalance_date"].to_list() == [B]


def test_a_resumed_write_of_a_vanished_partition_names_it(tmp_path):
    run = _run(tmp_path, ["2020"])
    run.start = A2
    with pytest.raises(RuntimeError, match=r"meta_weights_m_r\[2020\] \(table meta_weights\) vanished"):
        run.write("meta_weights", "meta_weights_m_r", _meta_weights([A2]), meta="m", risk="r")


def test_only_the_last_partition_of_a_run_whose_checks_passed_records_its_fingerprints(tmp_path):
    from dagster import AssetCheckResult

    fingerprints = {A: "fa", B: "fb"}
    run = _run(tmp_path, ["2020", "2021"])
    run.recording = True
    run._fingerprints = lambda table, asset, key: fingerprints  # type: ignore[method-assign]  # no Dagster context
    run.write("meta_weights", "meta_weights_m_r", _meta_weights([A, C]), meta="m", risk="r")
    # the run's last partition records them; an earlier one does not (re-materialised alone, it computes every date)
    assert run.lh.footer("meta_weights", "meta_weights_m_r", "2021").inputs == {"2020-03-06": "fa", "2020-12-25": "fb"}
    assert run.lh.footer("meta_weights", "meta_weights_m_r", "2020").inputs is None

    one = _run(tmp_path / "one", ["2020"])
    one.recording = True
    one._fingerprints = lambda table, asset, key: fingerprints  # type: ignore[method-assign]
    identity = {"meta": "m", "risk": "r"}
    ok = AssetCheckResult(check_name="weights_within_bounds", passed=True, asset_key="meta_weights_m_r")
    one.publish("meta_weights", "meta_weights_m_r", _meta_weights([A]), identity=identity, checks=[ok])
    assert one.lh.footer("meta_weights", "meta_weights_m_r", "2020").inputs == {"2020-03-06": "fa", "2020-12-25": "fb"}
    failed = AssetCheckResult(check_name="weights_within_bounds", passed=False, asset_key="meta_weights_m_r")
    one.publish("meta_weights", "meta_weights_m_r", _meta_weights([A]), identity=identity, checks=[ok, failed])
    assert one.lh.footer("meta_weights", "meta_weights_m_r", "2020").inputs is None  # recomputed next time


def _metadata_by_partition(add) -> dict[tuple[str, str], dict]:
    """Materialise a two-key step over three yearly partitions in one run, each key's per-partition
    metadata attached by `add(context, key, {partition: metadata})`; the stored events' metadata."""
    years = dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 1 1 *", start=dt.datetime(2020, 1, 1), end=dt.datetime(2023, 1, 1), fmt="%Y"
    )

    @dg.multi_asset(
        specs=[dg.AssetSpec("weights_s"), dg.AssetSpec("returns_s")],
        partitions_def=years,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def step(context):
        for key in ("weights_s", "returns_s"):
            add(context, key, {pk: {"rows": int(pk) - 2000, "year": pk} for pk in context.partition_keys})
            add(context, key, {context.partition_keys[0]: {"first": True}})  # a second call adds, not replaces
            add(context, key, {context.partition_keys[-1]: {"year": "last"}})  # and the later value of a name wins
            yield dg.MaterializeResult(asset_key=key, metadata={"step": "common"})

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [step],
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2020", "dagster/asset_partition_range_end": "2022"},
    )
    assert result.success
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out[(m.asset_key.to_user_string(), m.partition)] = {k: v.value for k, v in m.metadata.items()}
    return out


def test_partitions_metadata_in_one_update_is_what_dagsters_per_partition_calls_store():
    def dagsters(context, key, by_partition):
        for pk, md in by_partition.items():
            context.add_asset_metadata(md, asset_key=key, partition_key=pk)

    ours = _metadata_by_partition(
        lambda context, key, by: add_partitions_metadata(context, key, by, context.partition_keys)
    )
    assert ours == _metadata_by_partition(dagsters)
    assert len(ours) == 6
    assert ours[("returns_s", "2020")] == {"rows": 20, "year": "2020", "first": True, "step": "common"}
    assert ours[("weights_s", "2022")] == {"rows": 22, "year": "last", "step": "common"}


def test_partitions_metadata_for_a_partition_outside_the_run_is_refused_naming_it():
    with pytest.raises(
        Exception, match=r"weights_s: partition '2019' is not in this run's range \['2020', '2021', '2022'\]"
    ):
        _metadata_by_partition(
            lambda context, key, by: add_partitions_metadata(context, key, {"2019": {}}, context.partition_keys)
        )
