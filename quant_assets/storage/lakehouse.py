"""The lakehouse: one Parquet file per (asset, partition), DuckDB views on top.

Layout: ``<root>/<table>/<asset_name>/<partition>.parquet``, where a partition is a calendar period
("2019"). A table groups every asset of one concept (all sleeves' weights live under
``sleeve_weights/``) so one SQL view answers questions across sleeves; rows carry their
``rebalance_date`` (decisions) or ``date`` (daily data), so a view filters by date like any relation.
Daily data is stored once, in the partition of the period it falls in: a trailing window that
reaches into earlier periods reads their files.

Why files and not one DuckDB database: DuckDB allows a single writer process, and Dagster's
multiprocess executor runs two steps at once. A partition write here is "write a temp file, then
``os.replace``", which is atomic, idempotent (re-materialising replaces exactly that partition's
rows) and needs no lock. Readers get DuckDB views built in memory (see ``Lakehouse.connect``);
measured in ``benchmarks/storage.py`` and explained in ``docs/architecture.md``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

from quant_assets.data.atomic import write_parquet_atomic
from quant_assets.data.hashing import prefix_hashes
from quant_assets.storage.schemas import TABLES

LEDGER_FILE = Path("audit") / "ledger.jsonl"  # the audit ledger, under the lakehouse root

LAKEHOUSE_ENV_VAR = "QUANT_ASSETS_LAKEHOUSE"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_root() -> Path:
    return Path(os.environ.get(LAKEHOUSE_ENV_VAR) or REPO_ROOT / "lakehouse")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_orphaned_temp_files(target: Path) -> None:
    """Delete the temp files a killed writer of `target` left (SIGKILL skips its cleanup): those whose
    writer pid (in the name, `.<file>.<pid>.<uuid>.tmp`) is no longer alive. The partition itself was
    never half-written (`os.replace` is atomic); this only clears the debris."""
    prefix = f".{target.name}."
    with os.scandir(target.parent) as entries:  # a plain scan: Path.glob compiles a pattern per call
        debris = [e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    for name in debris:
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            (target.parent / name).unlink(missing_ok=True)


class LakehouseError(RuntimeError):
    """A read or write that cannot proceed; the message names the table, asset and partition."""


@functools.cache
def _exact_schema(table: str) -> pl.Schema:
    """A table's declared columns and types as polars compares them (names, order and dtypes)."""
    return pl.Schema(TABLES[table].schema)


def _key_str(key: dt.date | str) -> str:
    return key if isinstance(key, str) else key.isoformat()


def pivot_wide(frame: pl.DataFrame, value: str, index: str = "date", columns: str = "symbol") -> pd.DataFrame:
    """Long lakehouse rows -> dates x symbols pandas frame (NaN where absent)."""
    if frame.height == 0:
        return pd.DataFrame()
    out = frame.select(index, columns, value).to_pandas().pivot(index=index, columns=columns, values=value)
    out.index = pd.DatetimeIndex(out.index)
    out.columns.name = None
    return out.sort_index()


class _ReadCache:
    """Per-process cache of partitions read or written, keyed by file identity (inode, mtime, size).

    Many assets read the same snapshot (16 sleeve assets read one universe's returns per date), and
    in a run every step reads what the steps before it wrote. A rewrite replaces the file, so its
    identity changes and a stale hit is impossible. Bounded by entries and by the frames' estimated
    bytes (a 500-symbol universe's partitions are tens of MB each), least recently used out first;
    a frame larger than the byte bound is not kept.
    """

    def __init__(self, max_entries: int = 2048, max_bytes: int = 1 << 30):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries: OrderedDict[tuple, tuple[pl.DataFrame, int]] = OrderedDict()
        self.bytes = 0

    @staticmethod
    def _key(path: Path, kind: str, st: os.stat_result) -> tuple:
        return (str(path), kind, st.st_ino, st.st_mtime_ns, st.st_size)

    def get(self, path: Path, kind: str, load):
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = self._key(path, kind, st)
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key][0]
        value = load(path)
        self._keep(key, value)
        return value

    def put(self, path: Path, kind: str, value: pl.DataFrame, written: os.stat_result) -> None:
        """Remember what was just written to `path`, under the identity of the file we wrote
        (`written`; write-through: the next step of the run reads its upstream's partitions from
        memory instead of decoding the files it wrote)."""
        self._keep(self._key(path, kind, written), value)

    def clear(self) -> None:
        """Forget every frame (the next read of each file decodes it: a benchmark's cold read)."""
        self.entries.clear()
        self.bytes = 0

    def _keep(self, key: tuple, value: pl.DataFrame) -> None:
        size = int(value.estimated_size())
        if size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self.entries[key] = (value, size)
        self.bytes += size
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.bytes -= dropped


_CACHE = _ReadCache()


FOOTER_ROWS = "quant_assets.rows"  # the file's content hashes by date (`Footer`)
FOOTER_INPUTS = "quant_assets.inputs"  # the fingerprints of the inputs each date's rows were computed from


def date_column(table: str) -> str | None:
    """The column a table's rows are dated by: a decision's `rebalance_date`, else a day's `date`."""
    schema = TABLES[table].schema
    return "rebalance_date" if "rebalance_date" in schema else "date" if "date" in schema else None


@dataclass(frozen=True)
class Footer:
    """What a partition file records about its rows, in its own footer (written with the rows in
    one atomic rename, so never stale): content hashes of the rows dated up to each of its dates
    (`prefix_hashes`), and, when a step wrote it, the fingerprint of the inputs each rebalance
    date's rows were computed from. A step reading the file up to a horizon compares `upto`; a step
    rewriting it compares `inputs` to tell which dates it can keep (`Run.resume`)."""

    ordinals: tuple[int, ...]
    prefixes: tuple[int, ...]
    total: int
    inputs: Mapping[str, str] | None  # ISO date -> fingerprint
    known: bool = True  # False: the file predates footers (nothing is known of its content by date)
    dated: bool = True  # False: its table has no date column (every row counts for every date)

    def upto(self, day: dt.date | None) -> int:
        """The hash of the rows dated up to `day` (None, or a table without dates: every row)."""
        if day is None or not self.dated:
            return self.total
        i = bisect.bisect_right(self.ordinals, day.toordinal())
        return self.prefixes[i - 1] if i else 0


@functools.lru_cache(maxsize=4096)
def _footer_of(path: str, _identity: tuple) -> Footer:
    """A file's footer, cached by the file's identity (a rewrite is a new file: never a stale hit)."""
    meta = pl.read_parquet_metadata(path)
    rows = meta.get(FOOTER_ROWS)
    if rows is None:
        return Footer((), (), 0, None, known=False)
    rows = json.loads(rows)
    inputs = meta.get(FOOTER_INPUTS)
    return Footer(
        tuple(rows["ordinals"]),
        tuple(rows["prefixes"]),
        rows["total"],
        json.loads(inputs) if inputs else None,
        dated=rows.get("dated", True),
    )


def _corrupt(path: Path, table: str, asset: str, key: dt.date | str, error: Exception) -> LakehouseError:
    """A truncated or garbled file: say which, and how to repair it."""
    return LakehouseError(
        f"corrupt lakehouse file {path} (table {table}, asset {asset}, partition {_key_str(key)}): "
        f"{str(error).splitlines()[0]}. Re-materialise {asset} for partition {_key_str(key)} to rewrite it."
    )


class Lakehouse:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._made: set[Path] = set()  # asset folders known to exist
        self._tables: dict[str, list[str]] = {}  # asset -> the tables holding its rows (`tables_of`)

    # ---- paths ---------------------------------------------------------------------------

    def path(self, table: str, asset: str, key: dt.date | str) -> Path:
        if table not in TABLES:
            raise LakehouseError(f"unknown lakehouse table {table!r}; known: {sorted(TABLES)}")
        return self.root / table / asset / f"{_key_str(key)}.parquet"

    def partitions(self, table: str, asset: str) -> list[str]:
        folder = self.root / table / asset
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.parquet"))

    # ---- writes --------------------------------------------------------------------------

    def conform(self, table: str, frame: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
        """Cast to the table's declared schema; a missing column is an error naming it."""
        schema, optional = TABLES[table].schema, TABLES[table].optional
        if isinstance(frame, pd.DataFrame):
            frame = pl.from_pandas(frame, include_index=False) if len(frame.columns) else pl.DataFrame()
        if frame.height and frame.schema == _exact_schema(table):
            return frame  # already the table's columns and types, in order (each part of a conformed frame)
        absent = [c for c in optional if c not in frame.columns]
        if absent and frame.height:
            frame = frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in absent)
        missing = [c for c in schema if c not in frame.columns]
        if missing and frame.height:
            raise LakehouseError(f"table {table!r}: frame lacks columns {missing}")
        if frame.height == 0:
            return pl.DataFrame(schema=schema)
        return frame.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])

    def write_partition(
        self,
        table: str,
        asset: str,
        key: dt.date | str,
        frame: pl.DataFrame | pd.DataFrame,
        inputs: Mapping[dt.date, str] | None = None,
    ) -> Path:
        """Replace one partition atomically (delete-then-insert without a window in between). The
        footer records the rows' content hashes by date and `inputs` (a fingerprint per rebalance
        date of what the rows were computed from; see `Footer`)."""
        target = self.path(table, asset, key)
        out = self.conform(table, frame)
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        _remove_orphaned_temp_files(target)
        column = date_column(table)
        days, prefixes, total = prefix_hashes(out, column)
        rows = {"ordinals": [d.toordinal() for d in days], "prefixes": prefixes, "total": total, "dated": bool(column)}
        footer = {FOOTER_ROWS: json.dumps(rows)}
        if inputs is not None:
            footer[FOOTER_INPUTS] = json.dumps({d.isoformat(): fp for d, fp in inputs.items()})
        written = write_parquet_atomic(out, target, footer)
        _CACHE.put(target, "frame", out, written)
        return target

    # ---- reads ---------------------------------------------------------------------------

    def footer(self, table: str, asset: str, key: dt.date | str) -> Footer | None:
        """A partition's `Footer` (None: the partition was never written)."""
        path = self.path(table, asset, key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        try:
            return _footer_of(str(path), (st.st_ino, st.st_mtime_ns, st.st_size))
        except Exception as e:
            raise _corrupt(path, table, asset, key, e) from e

    def tables_of(self, asset: str) -> list[str]:
        """The tables holding rows of `asset` (a step may write an asset's rows to two tables). An
        asset's tables, once found, are remembered: a step's upstream assets wrote theirs before it."""
        tables = self._tables.get(asset)
        if tables is None:
            tables = [t for t in TABLES if (self.root / t / asset).is_dir()]
            if tables:
                self._tables[asset] = tables
        return tables

    def read(self, table: str, asset: str, keys: Iterable[str] | None = None) -> pl.DataFrame:
        """The rows of the given partitions (all stored ones when `keys` is None), concatenated."""
        stored = self.partitions(table, asset)
        wanted = stored if keys is None else [k for k in keys if k in set(stored)]
        frames = [f for k in wanted if (f := self.read_partition(table, asset, k)) is not None]
        if not frames:
            return pl.DataFrame(schema=TABLES[table].schema)
        return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]

    def read_partition(self, table: str, asset: str, key: dt.date | str) -> pl.DataFrame | None:
        """One stored partition (None when it was never materialised).

        Schemas evolve by adding columns: a partition written before a column was declared reads
        it as nulls (re-materialising the partition fills it), so old and new partitions concatenate.
        """
        path = self.path(table, asset, key)
        try:
            frame = _CACHE.get(path, "frame", pl.read_parquet)
        except Exception as e:
            raise _corrupt(path, table, asset, key, e) from e
        if frame is None:
            return None
        missing = [c for c in TABLES[table].schema if c not in frame.columns]
        if missing:
            schema = TABLES[table].schema
            frame = frame.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in missing).select(list(schema))
        return frame

    # ---- SQL -----------------------------------------------------------------------------

    def connect(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table that has data.

        In memory on purpose: nothing holds a lock on the lakehouse, so SQL can run while
        Dagster writes partitions. Read-only by default: once the views exist, file access is
        limited to the lakehouse folder and the configuration is locked, so a query cannot read
        other files on the machine, ATTACH databases or install extensions (`sql` also refuses
        every statement but SELECT/EXPLAIN, so COPY ... TO cannot overwrite a partition).
        `read_only=False` gives an unrestricted connection to code that means to write.

        A table with an unreadable file gets no view; `unreadable` names the file, its asset and
        partition, and every other table stays queryable.
        """
        con = duckdb.connect(":memory:")
        self.unreadable: dict[str, str] = {}
        root = self.root.resolve()  # the views and the access rule must name the same paths
        for table in TABLES:
            folder = root / table
            if any(folder.glob("*/*.parquet")):
                glob = str(folder / "*" / "*.parquet").replace("'", "''")
                try:
                    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', union_by_name=true)")
                except duckdb.Error as e:
                    self.unreadable[table] = self._unreadable_reason(table, e)
        ledger = root / LEDGER_FILE
        if ledger.exists():
            path = str(ledger).replace("'", "''")
            con.execute(
                "CREATE VIEW audit_ledger AS SELECT * FROM read_json("
                f"'{path}', format='newline_delimited', columns={{"
                "'type': 'VARCHAR', 'step': 'VARCHAR', 'asset': 'VARCHAR', 'partition': 'VARCHAR', "
                "'run_id': 'VARCHAR', 'params': 'JSON', 'input_hashes': 'JSON', 'intent_hash': 'VARCHAR', "
                "'status': 'VARCHAR', 'output_hash': 'VARCHAR', 'detail': 'JSON', 'ts': 'VARCHAR', "
                "'prev_hash': 'VARCHAR', 'hash': 'VARCHAR'})"
            )
            # One row per optimisation (an outcome record holds every rebalance date of its partition).
            con.execute(
                "CREATE VIEW audit_optimisations AS SELECT l.step, l.asset, l.partition, l.run_id, l.ts, "
                "CAST(o->>'rebalance_date' AS DATE) AS rebalance_date, o->>'status' AS status, "
                "o->>'output_hash' AS output_hash, o->>'profile_used' AS profile_used, o->>'engine' AS engine, "
                "o->>'chain' AS chain, o AS detail FROM audit_ledger l, "
                "unnest(CAST(json_extract(l.detail, '$.optimisations') AS JSON[])) AS t(o) WHERE l.type = 'outcome'"
            )
        if read_only:
            allowed = str(root).replace("'", "''")
            con.execute(f"SET allowed_directories = ['{allowed}/']")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con

    def _unreadable_reason(self, table: str, error: Exception) -> str:
        """Which file of a table cannot be read (checked one by one), as asset[partition]."""
        for path in sorted((self.root / table).glob("*/*.parquet")):
            try:
                pl.read_parquet_schema(path)
            except Exception as e:
                return (
                    f"table {table} is unreadable: corrupt file {path} (asset {path.parent.name}, partition "
                    f"{path.stem}): {str(e).splitlines()[0]}. Re-materialise {path.parent.name} for partition "
                    f"{path.stem} to rewrite it."
                )
        return f"table {table} is unreadable: {str(error).splitlines()[0]}"

    def sql(self, query: str, params: list | None = None) -> pl.DataFrame:
        """Run one read-only query (SELECT, or EXPLAIN of one); `params` fill its `?` placeholders.

        Anything else (COPY, ATTACH, CREATE, SET, ...) is refused before it runs. To write, use
        `connect(read_only=False)` from Python, or DuckDB itself on the Parquet files.
        """
        con = self.connect()
        try:
            statements = con.extract_statements(query)
            allowed = (duckdb.StatementType.SELECT,)  # not EXPLAIN: EXPLAIN ANALYZE runs its statement
            refused = [s.type.name for s in statements if s.type not in allowed]
            if refused:
                raise LakehouseError(
                    f"the lakehouse SQL surface is read-only: {', '.join(refused)} refused (only SELECT, "
                    f"DESCRIBE, SHOW, SUMMARIZE run). To write, use Lakehouse.connect(read_only=False) from Python."
                )
            if len(statements) != 1:
                raise LakehouseError(f"one statement per query, got {len(statements)}")
            try:
                return con.sql(query, params=params).pl()
            except duckdb.CatalogException as e:
                named = [t for t in self.unreadable if re.search(rf"\b{t}\b", query)]
                if named:
                    raise LakehouseError(self.unreadable[named[0]]) from e
                raise
        finally:
            con.close()
