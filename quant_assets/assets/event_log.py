"""A faster SQLite event log for the persistent Dagster instance (`make ui`, `make demo`).

Why: every asset partition a run materialises is two events in Dagster's event log (planned and
materialised), and Dagster's SQLite storage writes each event on its own: a new SQLAlchemy engine,
a connection and a commit to the run's shard, then the same again to the index shard, plus two
schema inspections per asset event. A 30-year backfill of the default graph is about 4,300 asset
partitions, and on that path the instance alone took 94-166 s before any of our code ran
(`benchmarks/dagster_floor.py`).

What changes, and what does not: the rows written are exactly Dagster's (the same insert
statements, the same asset-index updates through Dagster's own `_store_asset_event`), so the UI,
partition status and lineage read them unchanged. Only the transactions differ:

* `store_event_batch` writes a batch (Dagster sends one when `DAGSTER_EVENT_BATCH_SIZE` is set, as
  `definitions.py` does: the
  planned events of a run, and the per-partition materialisations of a ranged step) in one
  transaction per shard instead of one per event;
* engines are kept per shard instead of being created and disposed around every statement;
* commits use `PRAGMA synchronous=NORMAL` on top of the WAL journal Dagster already enables: still
  crash-safe for the database file (SQLite's documented WAL guarantee), without an fsync per event;
* the schema facts Dagster re-inspects per event (does the tags table exist, does the asset-key
  table have its index columns) are cached once they hold.

Dagster is pinned (pyproject.toml), and `quant_assets_tests/assets/test_event_log.py` checks that a
batched run leaves the same materialisations, partition statuses and records as Dagster's own
storage. `dagster.yaml` selects it; the in-memory instance of the tests keeps Dagster's default.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

MAX_OPEN_SHARDS = 8


def _fast_commit(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, writing batches in one transaction per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: dict[str, Engine] = {}
        self._known_tables: set[str] = set()
        self._asset_index_cols: bool = False
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

    # ---- connections: one engine per shard, kept -----------------------------------------

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(shard)
        if engine is None:
            if len(self._engines) >= MAX_OPEN_SHARDS:  # a long-lived process reads many run shards
                oldest = next(iter(self._engines))
                self._engines.pop(oldest).dispose()
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

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def has_table(self, table_name: str) -> bool:
        if table_name in self._known_tables:
            return True
        found = super().has_table(table_name)
        if found:
            self._known_tables.add(table_name)
        return found

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        if not self._asset_index_cols:
            self._asset_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_index_cols

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        super().dispose()

    # ---- batches ---------------------------------------------------------------------------

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store a run's events in one transaction per shard.

        The same rows as `SqliteEventLogStorage.store_event` per event: the event in its run's
        shard and, for asset events (materialised, observed, planned), a copy in the index shard
        with its tags and the asset-key index update. Anything else in a batch (check evaluations,
        run status events, several runs) goes through `store_event` one by one, as before.
        """
        simple = (
            all(
                e.run_id == events[0].run_id and (not e.is_dagster_event or e.dagster_event_type in ASSET_EVENTS)
                for e in events
            )
            if events
            else False
        )
        if not simple:
            for e in events:
                self.store_event(e)
            return
        statements = [self.prepare_insert_event(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        asset_events = [(e, s) for e, s in zip(events, statements) if e.is_dagster_event]
        if not asset_events:
            return
        with self.index_transaction() as conn:
            ids = []
            for _, statement in asset_events:
                key = conn.execute(statement).inserted_primary_key
                # a single-row insert() without RETURNING (prepare_insert_event): SQLAlchemy always
                # reports its primary-key row; None is only for executemany or non-insert statements
                assert key is not None
                ids.append(key[0])
            stored = [e for e, _ in asset_events]
            self._store_asset_event_tags(conn, stored, ids)
            for e, event_id in zip(stored, ids):
                self._store_asset_event(conn, e, event_id)
