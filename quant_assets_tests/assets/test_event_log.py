"""The batched SQLite event log (`quant_assets.assets.event_log`) leaves what Dagster's own storage
leaves: the same events, materialisations, metadata, partition statuses and check evaluations.

A small graph shaped like ours (subsettable multi-assets holding several keys, yearly partitions, a
blocking check, per-partition metadata) runs twice on each storage: a single-run backfill of three
partitions (the batched path: Dagster hands the storage a batch) and one partition alone.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._serdes import deserialize_value

from quant_assets.assets.event_log import BatchingSqliteEventLogStorage, FastInMemoryEventLogStorage, ephemeral_instance

pytestmark = pytest.mark.slow  # materialises graphs: `make test-fast` skips it

PARTITIONS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 1 1 *", start=dt.datetime(2020, 1, 1), end=dt.datetime(2023, 1, 1), fmt="%Y"
)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def graph() -> dg.Definitions:
    def step(name: str, keys: list[str], deps: list[str]):
        @dg.multi_asset(
            name=name,
            specs=[dg.AssetSpec(k, deps=deps) for k in keys],
            check_specs=[dg.AssetCheckSpec("rows_positive", asset=keys[0], blocking=True)],
            partitions_def=PARTITIONS,
            can_subset=True,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )
        def _step(context):
            for key in keys:
                if dg.AssetKey(key) not in context.selected_asset_keys:
                    continue
                for pk in context.partition_keys:  # per-partition metadata, as our steps attach it
                    context.add_asset_metadata({"rows": int(pk) - 2000, "year": pk}, asset_key=key, partition_key=pk)
                yield dg.MaterializeResult(asset_key=key)
            if dg.AssetKey(keys[0]) in context.selected_asset_keys:
                yield dg.AssetCheckResult(check_name="rows_positive", asset_key=keys[0], passed=True)

        return _step

    upstream = step("upstream", ["prices_u", "returns_u", "features_u"], [])
    downstream = step("downstream", ["weights_s", "returns_s"], ["returns_u", "features_u"])
    return dg.Definitions(assets=[upstream, downstream])


def run_twice(instance: dg.DagsterInstance) -> list[str]:
    job = graph().resolve_implicit_global_asset_job_def()
    keys = PARTITIONS.get_partition_keys()
    ranged = job.execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    # the asset-key table after the ranged run alone: its batch of three materialisations per key
    # must leave the last one (2022) as the key's latest, as applying them one by one does
    after_ranged = {
        r.asset_entry.asset_key.to_user_string(): r.asset_entry.last_materialization_record.partition_key
        for r in instance.get_asset_records()
    }
    assert after_ranged == dict.fromkeys(["features_u", "prices_u", "returns_s", "returns_u", "weights_s"], "2022")
    single = job.execute_in_process(instance=instance, run_config=QUIET, partition_key=keys[-1])
    assert ranged.success and single.success
    return [ranged.run_id, single.run_id]


def summary(instance: dg.DagsterInstance, run_ids: list[str]) -> dict:
    """What the UI reads back, with run ids and timestamps left out."""
    events = []
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            dagster_event = record.dagster_event
            if dagster_event is None:
                continue
            events.append(
                (
                    dagster_event.event_type_value,
                    dagster_event.step_key or "",
                    str(dagster_event.asset_key or ""),
                    dagster_event.partition or "",
                )
            )
    keys = sorted(instance.get_asset_keys(), key=lambda k: k.to_user_string())
    materialised = {k.to_user_string(): sorted(instance.get_materialized_partitions(k)) for k in keys}
    metadata = {}
    for key in keys:
        for record in instance.fetch_materializations(key, limit=100).records:
            mat = record.event_log_entry.asset_materialization
            metadata.setdefault(key.to_user_string(), []).append(
                (mat.partition, {k: v.value for k, v in mat.metadata.items()})
            )
    checks = {}
    for key in keys:
        for check in ("rows_positive",):
            found = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, check), limit=10)
            if found:
                checks[key.to_user_string()] = sorted(str(c.status) for c in found)
    # the index shard, which the UI's cross-run queries read: its event rows and check executions
    storage = instance.event_log_storage
    with storage.index_connection() as conn:

        def rows(*columns) -> list[tuple]:
            """The table's rows in storage order (by id): the order events were stored in."""
            return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(columns[0].table.c.id))]

        events_table, checks_table = SqlEventLogStorageTable.c, AssetCheckExecutionsTable.c
        index_rows = rows(
            events_table.dagster_event_type, events_table.asset_key, events_table.partition, events_table.step_key
        )
        check_rows = rows(
            checks_table.asset_key, checks_table.check_name, checks_table.partition, checks_table.execution_status
        )
        check_links = check_row_links(conn)
    # the asset-key table (the UI's asset list, "latest materialization"): each key's last record
    latest = {
        r.asset_entry.asset_key.to_user_string(): (
            r.asset_entry.last_materialization_record.partition_key,
            run_ids.index(r.asset_entry.last_run_id),
            sorted(r.asset_entry.last_materialization.asset_materialization.metadata),
        )
        for r in instance.get_asset_records()
        if r.asset_entry.last_materialization_record is not None
    }
    return {
        "latest": latest,
        "index_rows": index_rows,
        "check_rows": Counter(check_rows),
        "check_order": check_rows,
        "check_links": check_links,
        "events": Counter(events),
        "materialised": materialised,
        "metadata": {k: sorted(v, key=lambda t: (t[0], sorted(t[1].items()))) for k, v in metadata.items()},
        "checks": checks,
    }


def check_row_links(conn) -> list[tuple]:
    """Each check-execution row with what its columns point to, in storage order: its status, the
    kind of event its `evaluation_event` holds and whether that is, byte for byte, the event-log
    row its `evaluation_event_storage_id` names, and the kind and asset of the event its
    `materialization_event_storage_id` names (the UI links a check to both)."""
    events_table, checks_table = SqlEventLogStorageTable.c, AssetCheckExecutionsTable.c
    logged = {
        r.id: (r.event, r.dagster_event_type, r.asset_key)
        for r in conn.execute(
            sa.select(events_table.id, events_table.event, events_table.dagster_event_type, events_table.asset_key)
        )
    }
    out = []
    for r in conn.execute(sa.select(checks_table).order_by(checks_table.id)):
        evaluated = deserialize_value(r.evaluation_event, EventLogEntry)
        same_text = logged.get(r.evaluation_event_storage_id, (None,))[0] == r.evaluation_event
        target = logged.get(r.materialization_event_storage_id)
        out.append(
            (
                r.asset_key,
                r.check_name,
                r.partition,
                r.execution_status,
                evaluated.dagster_event_type.value,
                same_text,
                target[1:] if target else None,
            )
        )
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same runs on Dagster's storages and on ours: SQLite (the persistent instance) and in
    memory (the ephemeral one)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_EVENT_BATCH_SIZE", "100000")  # what definitions.py sets: Dagster sends batches
        for name, config in (
            ("dagster", ""),
            (
                "batched",
                "event_log_storage:\n  module: quant_assets.assets.event_log\n  class: BatchingSqliteEventLogStorage\n",
            ),
        ):
            home = tmp_path_factory.mktemp(name)
            mp.setenv("DAGSTER_HOME", str(home))  # as make ui / make demo set it
            (home / "dagster.yaml").write_text(config)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                out[name] = (type(instance.event_log_storage), summary(instance, run_twice(instance)))
        for name, make in (("dagster_memory", dg.DagsterInstance.ephemeral), ("memory", ephemeral_instance)):
            with make() as instance:
                out[name] = (type(instance.event_log_storage), summary(instance, run_twice(instance)))
    return out


def unpartitioned_check_rows(instance: dg.DagsterInstance) -> list[tuple]:
    """An unpartitioned asset with a passing and a failing check, materialised twice: each
    evaluation resolves the row its planned event inserted (the path our partitioned graph never
    takes: its evaluations are unpartitioned, so they get rows of their own)."""

    @dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="book"), dg.AssetCheckSpec("small", asset="book")])
    def book():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="positive", passed=True)
        yield dg.AssetCheckResult(check_name="small", passed=False)

    job = dg.Definitions(assets=[book]).resolve_implicit_global_asset_job_def()
    for _ in range(2):
        job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    with instance.event_log_storage.index_connection() as conn:
        return check_row_links(conn)


def test_a_check_evaluation_resolves_its_planned_row_as_dagsters_storage_does(tmp_path):
    found = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_EVENT_BATCH_SIZE", "100000")
        for name, config in (
            ("dagster", ""),
            (
                "batched",
                "event_log_storage:\n  module: quant_assets.assets.event_log\n  class: BatchingSqliteEventLogStorage\n",
            ),
        ):
            home = tmp_path / name
            home.mkdir()
            mp.setenv("DAGSTER_HOME", str(home))
            (home / "dagster.yaml").write_text(config)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                found[name] = unpartitioned_check_rows(instance)
        for name, make in (("dagster_memory", dg.DagsterInstance.ephemeral), ("memory", ephemeral_instance)):
            with make() as instance:
                found[name] = unpartitioned_check_rows(instance)
    assert found["batched"] == found["dagster"] and found["memory"] == found["dagster_memory"]
    book = '["book"]'
    materialised = ("ASSET_MATERIALIZATION", book)
    assert found["batched"] == 2 * [
        (book, "positive", None, "SUCCEEDED", "ASSET_CHECK_EVALUATION", True, materialised),
        (book, "small", None, "FAILED", "ASSET_CHECK_EVALUATION", True, materialised),
    ]


def test_the_batched_storage_is_the_one_dagster_yaml_selects(both):
    assert both["batched"][0] is BatchingSqliteEventLogStorage
    assert both["dagster"][0] is SqliteEventLogStorage
    assert both["memory"][0] is FastInMemoryEventLogStorage
    assert both["dagster_memory"][0] is InMemoryEventLogStorage


@pytest.mark.parametrize("ours_name, theirs_name", [("batched", "dagster"), ("memory", "dagster_memory")])
def test_same_events_materialisations_metadata_and_checks(both, ours_name, theirs_name):
    ours, theirs = both[ours_name][1], both[theirs_name][1]
    assert ours["events"] == theirs["events"]
    assert ours["index_rows"] == theirs["index_rows"]
    assert ours["latest"] == theirs["latest"]
    assert ours["latest"]["prices_u"][:2] == ("2022", 1)  # the single run's partition, last
    assert ours["check_rows"] == theirs["check_rows"] and ours["check_order"] == theirs["check_order"]
    assert ours["check_links"] == theirs["check_links"]
    # every row's event is its event-log row's, and each evaluation names the materialisation it checked
    assert all(same for *_, same, _ in ours["check_links"])
    evaluated = [link for link in ours["check_links"] if link[3] == "SUCCEEDED"]
    assert evaluated and all(link[-1] == ("ASSET_MATERIALIZATION", link[0]) for link in evaluated)
    # per check: a planned row per partition of each run (2020-2022, then 2022) and one evaluation
    # per run (the check has no partitions of its own, so Dagster records it unpartitioned)
    for asset in ('["prices_u"]', '["weights_s"]'):
        rows = {(p, status): n for (a, _, p, status), n in ours["check_rows"].items() if a == asset}
        assert rows == {("2020", "PLANNED"): 1, ("2021", "PLANNED"): 1, ("2022", "PLANNED"): 2, (None, "SUCCEEDED"): 2}
    assert ours["materialised"] == theirs["materialised"]
    assert ours["materialised"]["weights_s"] == ["2020", "2021", "2022"]
    assert ours["metadata"] == theirs["metadata"]
    # the ranged run attached each partition's own metadata; the single run re-materialised 2022
    assert [(p, m["rows"]) for p, m in ours["metadata"]["prices_u"]] == [
        ("2020", 20),
        ("2021", 21),
        ("2022", 22),
        ("2022", 22),
    ]
    assert ours["checks"] == theirs["checks"] and ours["checks"]["prices_u"]
    assert sum(ours["events"].values()) > 40  # the comparison covers a real run, not an empty log


def note(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=time.time())


def test_the_ui_sees_a_running_runs_events_as_they_are_stored(tmp_path):
    """The UI follows a running run by watching its shard's file (Dagster's watchdog). Our kept
    connection leaves committed events in the WAL, so each write also touches the file: the
    watcher, in another storage object as in the UI's process, gets every event while the run goes on."""
    writer, ui = BatchingSqliteEventLogStorage(str(tmp_path)), BatchingSqliteEventLogStorage(str(tmp_path))
    try:
        writer.store_event(note("run", "started"))
        seen: list[str] = []
        ui.watch("run", None, lambda entry, _cursor: seen.append(entry.user_message))
        time.sleep(0.3)  # the observer thread starts
        for k in range(3):
            writer.store_event_batch([note("run", f"event {k}a"), note("run", f"event {k}b")])
            deadline = time.time() + 5
            while len(seen) < 1 + 2 * (k + 1) and time.time() < deadline:
                time.sleep(0.05)
            assert seen[-2:] == [f"event {k}a", f"event {k}b"]  # before the next write
        assert seen[0] == "started"
    finally:
        ui.dispose()
        writer.dispose()


def test_a_wipe_closes_the_kept_run_shards_first(tmp_path):
    storage = BatchingSqliteEventLogStorage(str(tmp_path))
    try:
        storage.store_event(note("run", "before"))
        storage.wipe()
        storage.store_event(note("run", "after"))  # a new shard file, not the deleted one
        assert [r.event_log_entry.user_message for r in storage.get_records_for_run("run").records] == ["after"]
        assert (tmp_path / "run.db").exists()
    finally:
        storage.dispose()


def test_a_long_lived_process_keeps_at_most_max_open_shards_connections(tmp_path):
    """A UI process reads many runs' shards: the oldest kept connection is closed (with its engine)
    for each new shard past MAX_OPEN_SHARDS, and a closed shard reopens when read again."""
    from quant_assets.assets.event_log import MAX_OPEN_SHARDS

    storage = BatchingSqliteEventLogStorage(str(tmp_path))
    runs = [f"run{i}" for i in range(MAX_OPEN_SHARDS + 3)]
    try:
        for run in runs:
            storage.store_event(note(run, f"in {run}"))
        for run in runs:  # the earliest were closed, and reopen
            assert [r.event_log_entry.user_message for r in storage.get_records_for_run(run).records] == [f"in {run}"]
            assert len(storage._engines) <= MAX_OPEN_SHARDS
            assert set(storage._connections) <= set(storage._engines)
    finally:
        storage.dispose()
    assert not storage._engines and not storage._connections


def test_the_in_memory_storage_serves_any_thread():
    """The kept connection is not tied to the thread that opened it (Dagster's opened one per call)."""
    instance = ephemeral_instance()
    storage = instance.event_log_storage
    storage.store_event(note("run", "main thread"))
    out: list = []

    def other() -> None:
        try:
            storage.store_event(note("run", "other thread"))
            out.extend(r.event_log_entry.user_message for r in storage.get_records_for_run("run").records)
        except Exception as e:  # pragma: no cover - reported by the assertion below
            out.append(e)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert out == ["main thread", "other thread"]
    instance.dispose()
