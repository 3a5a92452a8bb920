"""Faster Dagster event logs: SQLite for the persistent instance (`make ui`, `make demo`, the
command line), in memory for the ephemeral one (tests, benchmarks, notebooks: `ephemeral_instance`).

Why: every asset partition a run materialises is two events in Dagster's event log (planned and
materialised), and Dagster's SQLite storage writes each event on its own: a new SQLAlchemy engine,
a connection and a commit to the run's shard, then the same again to the index shard, plus two
schema inspections per asset event. A 30-year backfill of the default graph is about 4,300 asset
partitions, and on that path the instance alone took 94-166 s before any of our code ran
(`benchmarks/dagster_floor.py`).

What changes, and what does not: the rows written are exactly Dagster's (the same tables,
columns and values, the same asset-index updates through Dagster's own `_store_asset_event`), so the UI,
partition status and lineage read them unchanged. Only the transactions differ:

* `store_event_batch` writes a batch (Dagster sends one when `DAGSTER_EVENT_BATCH_SIZE` is set, as
  `definitions.py` does: the
  planned events of a run, and the per-partition materialisations of a ranged step) in one
  transaction per shard instead of one per event;
* a connection is kept per shard instead of an engine being created and disposed around every
  statement (and the SQLAlchemy connection too, not checked out of a pool and rolled back around
  every transaction);
* commits use `PRAGMA synchronous=NORMAL` on top of the WAL journal Dagster already enables: still
  crash-safe for the database file (SQLite's documented WAL guarantee), without an fsync per event;
* each event's insert is one statement compiled once per shard and executed with the event's row
  as parameters, where Dagster builds a statement holding the row's values and SQLAlchemy
  re-derives its cache key on every execution (about a third of a millisecond per event and shard,
  measured with py-spy on the yearly update);
* a planned check's rows (one per partition of the run) are one statement compiled once, the event
  serialised once, where Dagster serialises it again for every partition and compiles a multi-row
  statement for each row count; a check's evaluation updates its row in the same transaction as
  the event, with a statement compiled once, where Dagster opens a connection and commits again;
* the schema facts Dagster re-inspects per event and per asset lookup (does the tags table exist,
  does the asset-key table have a column, has a secondary index been built) are cached once they
  hold: a migration only ever adds them.

Dagster's in-memory storage (`DagsterInstance.ephemeral()`) is the same SQL storage on an
in-memory SQLite database, and pays more per statement: a new connection and two PRAGMAs for each
one, and a schema inspection on a fresh connection per asset event. In a full-history backfill it
was about 19 s of the run's critical path (py-spy, `benchmarks.backfill --stock-ephemeral`).
`FastInMemoryEventLogStorage` keeps one connection and takes the same batches, compiled inserts
and cached schema facts; `ephemeral_instance()` is Dagster's ephemeral instance with it.

Dagster is pinned (pyproject.toml), and `quant_assets_tests/assets/test_event_log.py` checks that
both storages leave the same events, materialisations, partition statuses, metadata, index rows and
check executions as Dagster's own. `dagster.yaml` selects the SQLite one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from dagster import DagsterInstance, DagsterInvariantViolationError
from dagster._core.events import (
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
    DagsterEventType,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.types import InstanceType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import EventLogCursor
from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import serialize_value
from sqlalchemy import and_, bindparam, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import BindParameter

MAX_OPEN_SHARDS = 8
# An event's row goes in as parameters of this one statement (the same columns Dagster's
# `prepare_insert_event` fills), so SQLAlchemy compiles it once per shard.
INSERT_EVENT = SqlEventLogStorageTable.insert()
INSERT_CHECK_EXECUTION = AssetCheckExecutionsTable.insert()
# A check evaluation resolves the row its planned event inserted: Dagster's update, with the values
# as parameters (compiled once per shard, as the inserts); `partition IS NULL` is its own statement.
_CHECK_ROW = AssetCheckExecutionsTable.c
_RESOLVED_COLUMNS = (
    "execution_status",
    "evaluation_event",
    "evaluation_event_timestamp",
    "evaluation_event_storage_id",
    "materialization_event_storage_id",
    "partition",
)
_RESOLVE_CHECK_VALUES: dict[str, BindParameter] = {c: bindparam(f"set_{c}") for c in _RESOLVED_COLUMNS}
_PLANNED_ROW = and_(
    _CHECK_ROW.asset_key == bindparam("row_asset_key"),
    _CHECK_ROW.check_name == bindparam("row_check_name"),
    _CHECK_ROW.run_id == bindparam("row_run_id"),
)
RESOLVE_CHECK = {
    True: AssetCheckExecutionsTable.update()
    .where(_PLANNED_ROW, _CHECK_ROW.partition == bindparam("row_partition"))
    .values(_RESOLVE_CHECK_VALUES),
    False: AssetCheckExecutionsTable.update()
    .where(_PLANNED_ROW, _CHECK_ROW.partition.is_(None))
    .values(_RESOLVE_CHECK_VALUES),
}


def _fast_commit(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


if TYPE_CHECKING:  # the mixin's super() is Dagster's SQL event log
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluation,
        AssetCheckEvaluationPlanned,
    )

    _SqlEventLog = SqlEventLogStorage
else:
    _SqlEventLog = object


_BATCHED = ASSET_EVENTS | ASSET_CHECK_EVENTS  # what a run's event batches hold
_INDEXED = ASSET_EVENTS | ASSET_CHECK_EVENTS | set(EVENT_TYPE_TO_PIPELINE_RUN_STATUS)


def _insert(conn: Connection, row: dict) -> int:
    """Insert one event row; its id (a single-row insert without RETURNING: SQLAlchemy always
    reports the primary key)."""
    key = conn.execute(INSERT_EVENT, row).inserted_primary_key
    assert key is not None and key[0] is not None
    return key[0]


def _latest_per_asset_and_kind(assets: list[tuple[EventLogEntry, int]]) -> list[tuple[EventLogEntry, int]]:
    """The events of a batch whose asset-key row update is not overwritten later in the batch.

    `_store_asset_event` upserts the asset's row in the asset-key table with columns set by the
    event's kind (a materialisation: the last materialisation record, run and timestamp; a planned
    event: the run and timestamp). Every later event of the same asset and kind sets the same
    columns again, so only the last one of each (asset, kind) decides the row, as when each event
    is applied in turn. A ranged step's batch holds 31 materialisations per asset (one per yearly
    partition); Dagster serialised and upserted each of them."""
    last = {}
    for i, (e, _) in enumerate(assets):
        last[(e.get_dagster_event().asset_key, e.dagster_event_type)] = i
    return [assets[i] for i in sorted(last.values())]


class _FasterEvents(_SqlEventLog):
    """What both storages change in Dagster's SQL event log: batches in one transaction, compiled
    inserts, cached schema facts. The rows are Dagster's own: built by its `_event_to_row`,
    `_store_asset_event_tags` and `_get_asset_entry_values`, and for checks the columns and values
    of its `store_asset_check_event` (which still stores a check evaluated outside a run)."""

    def _init_caches(self) -> None:
        self._known_tables: set[str] = set()
        self._asset_key_cols: set[str] = set()
        self._secondary_indexes: set[str] = set()

    def has_table(self, table_name: str) -> bool:
        if table_name in self._known_tables:
            return True
        found = super().has_table(table_name)  # type: ignore[safe-super]  # both parents implement it
        if found:
            self._known_tables.add(table_name)
        return found

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if column_name in self._asset_key_cols:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._asset_key_cols.add(column_name)
        return found

    def has_secondary_index(self, name: str) -> bool:
        if name in self._secondary_indexes:
            return True
        found = super().has_secondary_index(name)
        if found:
            self._secondary_indexes.add(name)
        return found

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        with self.index_connection() as conn:
            self._insert_planned_check(conn, event, event_id, serialize_value(event))

    def _insert_planned_check(
        self, conn: Connection, event: EventLogEntry, event_id: int | None, serialised: str
    ) -> None:
        """Dagster's rows for a planned check (one per partition the check is planned for), inserted
        with one statement compiled once, the event serialised once (its event-log row's text):
        Dagster serialises the event again for every partition and builds a statement holding the
        values, compiled anew for each row count (a backfill plans its 136 checks over 31
        partitions: 4,216 rows)."""
        assert event.dagster_event is not None  # Dagster calls this for planned check events only
        planned = cast("AssetCheckEvaluationPlanned", event.dagster_event.event_specific_data)
        keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialised,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        conn.execute(INSERT_CHECK_EXECUTION, [{**common, "partition": key} for key in keys])

    def _resolve_check(self, conn: Connection, event: EventLogEntry, event_id: int, serialised: str) -> None:
        """Dagster's `_update_asset_check_evaluation` in the batch's transaction: the evaluation
        updates the row its planned event inserted (asset, check, run and partition), or inserts
        one if there is none; the event serialised once (its event-log row's text), the update
        compiled once. Dagster opened a connection and committed for each evaluation, and
        serialised the event again (the weekly update evaluates 136 checks)."""
        evaluation = cast("AssetCheckEvaluation", event.get_dagster_event().event_specific_data)
        target = evaluation.target_materialization_data
        passed = (
            AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed else AssetCheckExecutionRecordStatus.FAILED
        )
        resolved = {
            "execution_status": passed.value,
            "evaluation_event": serialised,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
            "materialization_event_storage_id": target.storage_id if target else None,
            "partition": evaluation.partition,
        }
        planned = {
            "asset_key": evaluation.asset_key.to_string(),
            "check_name": evaluation.check_name,
            "run_id": event.run_id,
        }
        updated = conn.execute(
            RESOLVE_CHECK[evaluation.partition is not None],
            {
                **{f"row_{c}": v for c, v in planned.items()},
                "row_partition": evaluation.partition,
                **{f"set_{c}": v for c, v in resolved.items()},
            },
        ).rowcount
        if updated > 1:  # Dagster's invariant: one planned row per check, run and partition
            raise DagsterInvariantViolationError(
                f"Updated {updated} rows for asset check evaluation {evaluation.asset_check_key} "
                "as a result of duplicate AssetCheckPlanned events."
            )
        if not updated:  # no planned row (Dagster's fallback): the evaluation's own row
            conn.execute(INSERT_CHECK_EXECUTION, {**planned, **resolved})

    def store_event(self, event: EventLogEntry) -> None:
        """`SqliteEventLogStorage.store_event`, statement for statement, with the compiled insert:
        the event in its run's shard; asset events (materialised, observed, planned) and check
        events also in the index shard (with the tags and asset-key update, or the check-execution
        row); run status events also in the index shard."""
        self._store_events([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a run's events in one transaction per shard.

        The same rows as `store_event` per event, in the same order. Dagster sends batches of one
        run's planned events (assets and checks) and of a ranged step's per-partition
        materialisations; a batch holding anything else (run status events, several runs) goes
        through `store_event` one by one, as before.
        """
        if not events:
            return
        if all(
            e.run_id == events[0].run_id and (not e.is_dagster_event or e.dagster_event_type in _BATCHED)
            for e in events
        ):
            self._store_events(events)
        else:
            for e in events:
                self._store_events([e])

    def _store_asset_event(self, conn: Connection, event: EventLogEntry, event_id: int) -> None:
        """Dagster's upsert of the asset's row in the asset-key table, update first: Dagster inserts
        first and updates on the IntegrityError, which is every event of an asset materialised
        before (all of them in the weekly update: about 0.2 s of exception handling per update)."""
        dagster_event = event.dagster_event
        if not (dagster_event and dagster_event.asset_key):
            return
        values = self._get_asset_entry_values(event, event_id, self._has_asset_key_index_cols_on_connection(conn))
        if not values:
            return
        key = dagster_event.asset_key.to_string()
        updated = conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == key))
        if not updated.rowcount:
            conn.execute(AssetKeyTable.insert().values(asset_key=key, **values))

    # Dagster's SQLite storage writes each event to its run's shard and asset, check and run-status
    # events again to the index shard; its in-memory storage has one database and writes it once.
    ONE_DATABASE = False

    def _store_events(self, events: Sequence[EventLogEntry]) -> None:
        """Dagster's `store_event` for each event, in order: the row in the run's database (its id
        is the event's id when there is one database); with a run shard, asset, check and
        run-status events copied to the index shard (the copy's id is the event's id); then the
        asset events' tags and asset-key rows, and the check-execution rows."""
        rows = [self._event_to_row(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            if self.ONE_DATABASE:
                ids: dict[int, int] = {i: _insert(conn, row) for i, row in enumerate(rows)}
            else:
                conn.execute(INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
        self._after_run_write(events[0].run_id)
        indexed = [i for i, e in enumerate(events) if e.is_dagster_event and e.dagster_event_type in _INDEXED]
        if not indexed:
            return
        with self.index_transaction() as conn:
            if not self.ONE_DATABASE:
                ids = {i: _insert(conn, rows[i]) for i in indexed}
            assets = [
                (events[i], ids[i])
                for i in indexed
                if events[i].dagster_event_type in ASSET_EVENTS and events[i].get_dagster_event().asset_key
            ]
            if assets:
                self._store_asset_event_tags(conn, [e for e, _ in assets], [i for _, i in assets])
                for e, event_id in _latest_per_asset_and_kind(assets):
                    self._store_asset_event(conn, e, event_id)
            runless = []
            for i in indexed:
                kind = events[i].dagster_event_type
                if kind in ASSET_CHECK_EVENTS and not self.supports_asset_checks:  # Dagster's check
                    raise DagsterInvariantViolationError(
                        "Asset checks require a database schema migration. Run `dagster instance migrate`."
                    )
                if kind == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
                    self._insert_planned_check(conn, events[i], ids[i], rows[i]["event"])
                elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
                    if events[i].run_id:
                        self._resolve_check(conn, events[i], ids[i], rows[i]["event"])
                    else:
                        runless.append(i)
        for i in runless:  # a check evaluated outside a run: Dagster's code, on its own connection
            self.store_asset_check_event(events[i], ids[i])

    def _after_run_write(self, run_id: str) -> None:
        """Called once a run's events are committed (nothing to do in one database)."""


class BatchingSqliteEventLogStorage(_FasterEvents, SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, writing batches in one transaction per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: dict[str, Engine] = {}
        self._connections: dict[str, Connection] = {}
        self._init_caches()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls):
        from dagster import Field, StringSource

        return {
            "base_dir": Field(
                StringSource,
                is_required=False,
                description="default: $DAGSTER_HOME/storage, where Dagster's own SQLite log lives",
            )
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # the parent hard-codes its own class
        base_dir = config_value.get("base_dir")
        if not base_dir:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise RuntimeError(
                    "BatchingSqliteEventLogStorage stores its events under $DAGSTER_HOME/storage: "
                    "set DAGSTER_HOME to the instance's folder (make ui / make demo do), or give "
                    "the storage a base_dir in dagster.yaml"
                )
            base_dir = os.path.join(home, "storage")
        return cls(base_dir, inst_data=inst_data)

    # ---- connections: one per shard, kept ------------------------------------------------

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            if len(self._engines) >= MAX_OPEN_SHARDS:  # a long-lived process reads many run shards
                self._close(next(iter(self._engines)))
            # One connection per shard, kept open (StaticPool; `_connect` holds `_db_lock`, so
            # it is never shared between threads at once). Closing a WAL database's last
            # connection checkpoints it: Dagster's NullPool paid that on every statement.
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _fast_commit)
            self._engines[shard] = engine
        return engine

    def _close(self, shard: str) -> None:
        if (conn := self._connections.pop(shard, None)) is not None:
            conn.close()
        self._engines.pop(shard).dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """A transaction on the shard's kept connection, committed on exit. The SQLAlchemy
        connection is kept too, not only the database connection under it: checking one out of
        the pool and returning it (a rollback) around every transaction was about a fifth of the
        weekly update's event storing."""
        with self._db_lock:
            conn = self._connections.get(shard)
            if conn is None:
                engine = self._engine(shard)
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
                conn = self._connections[shard] = engine.connect()
            with conn.begin():
                yield conn

    def _after_run_write(self, run_id: str) -> None:
        """Tell whoever watches the run's log (the UI showing a running run) that it grew.

        Dagster's watcher (`SqliteEventLogStorageWatchdog`) reacts to changes of the run's `.db`
        file. With the connection kept open, committed events stay in the `-wal` file until SQLite
        checkpoints (about every 1,000 pages), so the file would not change and the UI would show
        none of a running run's events; Dagster closed the connection after every statement, which
        checkpointed. Setting the file's times raises the same change event (inotify's attribute
        change, which watchdog reports as a modification) for a system call, without a checkpoint
        and its fsyncs; the watcher's query then reads the committed events, WAL included. Only
        writes touch the file: a read that did would wake the watcher, whose read would wake it
        again."""
        try:
            os.utime(self.path_for_shard(run_id))
        except FileNotFoundError:  # the shard was wiped meanwhile
            pass

    def wipe(self) -> None:
        """Dagster's wipe deletes the run shards' files: close our kept connections to them first,
        or later writes for those runs would go to the deleted files."""
        self._close_run_shards()
        super().wipe()
        self._close_run_shards()  # any a thread opened while Dagster deleted the files

    def _close_run_shards(self) -> None:
        with self._db_lock:
            for shard in [s for s in self._engines if s != INDEX_SHARD_NAME]:
                self._close(shard)

    def dispose(self) -> None:
        super().dispose()  # first: it stops the watcher thread, which reads through `_connect`
        with self._db_lock:
            for shard in list(self._engines):
                self._close(shard)


class FastInMemoryEventLogStorage(_FasterEvents, InMemoryEventLogStorage):
    """Dagster's in-memory event log on one kept connection, with the batches and compiled inserts.

    Dagster's opens a connection and runs two PRAGMAs (WAL, which an in-memory database ignores,
    and foreign keys) for every statement; here the foreign-keys PRAGMA runs once, on the one
    connection every statement uses (under Dagster's `_db_lock`, as before)."""

    ONE_DATABASE = True

    def __init__(self, inst_data=None, preload=None):
        self._init_caches()
        self._kept: Connection | None = None
        self._kept_engine: Engine | None = None
        super().__init__(inst_data, preload)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self._db_lock:
            if self._kept is None:
                # The same shared-cache database as Dagster's engine, on a connection any thread may
                # use (SQLite ties a connection to its thread unless told otherwise; `_db_lock`
                # keeps two threads from using it at once, as it did Dagster's connections).
                self._kept_engine = create_engine(
                    self._engine.url, poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
                self._kept = self._kept_engine.connect()
                self._kept.exec_driver_sql("PRAGMA foreign_keys=ON")
                self._kept.commit()
            with self._kept.begin():
                yield self._kept

    def store_event(self, event: EventLogEntry) -> None:
        self._store_events([event])
        self._notify(event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        super().store_event_batch(events)
        for e in events:
            self._notify(e)

    def _notify(self, event: EventLogEntry) -> None:
        """What `InMemoryEventLogStorage.store_event` does after the insert: advance the storage
        id and call the run's watchers."""
        self._storage_id += 1
        for handler in list(self._handlers[event.run_id]):
            try:
                handler(event, str(EventLogCursor.from_storage_id(self._storage_id)))
            except Exception:
                logging.exception("Exception in callback for event watch on run %s.", event.run_id)

    def dispose(self) -> None:
        with self._db_lock:
            if self._kept is not None:
                self._kept.close()
                self._kept = None
            if self._kept_engine is not None:
                self._kept_engine.dispose()
                self._kept_engine = None
        super().dispose()


def ephemeral_instance(tempdir: str | None = None) -> DagsterInstance:
    """`DagsterInstance.ephemeral()` (in-memory runs, no compute logs, runs launched in process)
    with `FastInMemoryEventLogStorage`: for tests, benchmarks and notebook backtests, where the
    instance is thrown away after the run. The lakehouse is what persists."""
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import LocalArtifactStorage, TemporaryLocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    return DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=LocalArtifactStorage(tempdir) if tempdir else TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=FastInMemoryEventLogStorage(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )
