"""Append-only, hash-chained audit ledger of every optimisation.

Each materialised asset partition that optimises (a sleeve lens, a meta lens) records an *intent*
(parameters, and per rebalance date the hashes of the inputs) and an *outcome* (overall status and
per rebalance date: status, hash of the weights, how they were produced). Every record carries
the previous record's hash and its own: ``hash = sha256(canonical JSON of the record without
"hash")``, so editing, deleting or reordering any record breaks the chain at that point, and
`verify` names the first broken link. Records carry Dagster's run id, asset key and partition: the
join keys to lineage. Re-materialising a partition appends new linked records; history is never
rewritten.

A step appends its records in one batch (`append_pairs`) once its computation is done: one lock,
one write, so a killed step leaves no half-written ledger and a backfill pays one append per
asset partition rather than two per rebalance date. Appends from concurrent processes are
serialised with an exclusive ``flock`` on the ledger file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

GENESIS = "0" * 64


class AuditLedgerError(RuntimeError):
    """The ledger cannot be appended to safely; the message names the file and what to do."""
LEDGER_FILE = Path("audit") / "ledger.jsonl"


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(record: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "nan"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.8f}"
    if isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):
        return pd.Timestamp(v).tz_localize(None).isoformat() if getattr(v, "tzinfo", None) else pd.Timestamp(v).isoformat()
    return str(v)


def _index_strings(index: pd.Index) -> list[str]:
    """`_fmt` of every index label, vectorised for the common index kinds."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is None:
        values = index.values
        if (values.astype("datetime64[s]") == values).all():
            return np.datetime_as_string(values, unit="s").tolist()
    if pd.api.types.is_integer_dtype(index.dtype):
        return [str(v) for v in index.tolist()]
    return [_fmt(v) for v in index]


def _column_strings(col: pd.Series) -> list[str]:
    """`_fmt` of every cell of a column, vectorised by dtype."""
    if pd.api.types.is_float_dtype(col.dtype):
        return ["nan" if v != v else f"{v:.8f}" for v in col.tolist()]
    if pd.api.types.is_integer_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return [str(v) for v in col.to_numpy()]
    return [_fmt(v) for v in col.tolist()]


def frame_hash(frame: pd.DataFrame | pd.Series) -> str:
    """Deterministic hash of a frame's content: columns and rows sorted, floats to 8 decimals.

    Independent of column order, row order and dtype details, so the same numbers always hash the
    same. (Computed column by column: a few microseconds per frame, as it runs once per optimisation.)
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame(name=str(frame.name))
    if frame.empty:
        return hashlib.sha256(b"empty").hexdigest()
    names = [str(c) for c in frame.columns]
    positions = sorted(range(len(names)), key=names.__getitem__)
    columns = [names[i] for i in positions]
    index = _index_strings(frame.index)
    dtypes = frame.dtypes.tolist()
    if all(t.kind in "fiuc" for t in dtypes):
        # Fast path (optimiser inputs): rows ordered by index then values, floats rounded to 8
        # decimals as IEEE bytes (-0.0 folded into 0.0, one canonical NaN).
        values = np.round(frame.to_numpy(dtype=float)[:, positions], 8) + 0.0
        values[np.isnan(values)] = np.nan
        if all(a < b for a, b in zip(index, index[1:])):  # unique, already in order (dates): nothing to sort
            ordered, data = index, values
        else:
            idx = np.array(index, dtype=object)
            order = np.lexsort([*values.T[::-1], idx.astype(str)])
            ordered, data = list(idx[order]), values[order]
        text = f"idx:{','.join(ordered)};cols:{','.join(columns)};data:"
        return hashlib.sha256(text.encode() + np.ascontiguousarray(data).tobytes()).hexdigest()
    cells = [_column_strings(frame.iloc[:, i]) for i in positions]
    rows = sorted(zip(index, *cells))
    body = ";".join("|".join(row[1:]) for row in rows)
    text = f"idx:{','.join(r[0] for r in rows)};cols:{','.join(columns)};data:{body}"
    return hashlib.sha256(text.encode()).hexdigest()


# ---- the same digests without building frames (the walk-forward loops hash every optimisation) ----


def weights_digest(labels: list[str], values: np.ndarray) -> str:
    """`frame_hash(pd.Series(values, index=labels, name="weight"))` for unique string labels."""
    if len(labels) == 0:
        return hashlib.sha256(b"empty").hexdigest()
    order = sorted(range(len(labels)), key=labels.__getitem__)
    v = np.round(np.asarray(values, dtype=float)[order], 8) + 0.0
    v[np.isnan(v)] = np.nan
    text = f"idx:{','.join(labels[i] for i in order)};cols:weight;data:"
    return hashlib.sha256(text.encode() + v.tobytes()).hexdigest()


def iso_days(days: np.ndarray) -> list[str]:
    """How `frame_hash` writes a date index ("2019-01-04T00:00:00"), for datetime64 days."""
    return np.datetime_as_string(np.asarray(days).astype("datetime64[s]"), unit="s").tolist()


def matrix_digest(index: list[str], columns: list[str], values: np.ndarray) -> str:
    """`frame_hash` of a numeric (dates x columns) frame whose date index, written by `iso_days`, is
    strictly increasing (a returns window): the frame is never built."""
    if len(index) == 0 or len(columns) == 0:
        return hashlib.sha256(b"empty").hexdigest()
    order = sorted(range(len(columns)), key=lambda j: str(columns[j]))
    v = np.round(np.asarray(values, dtype=float)[:, order], 8) + 0.0
    v[np.isnan(v)] = np.nan
    text = f"idx:{','.join(index)};cols:{','.join(str(columns[j]) for j in order)};data:"
    return hashlib.sha256(text.encode() + np.ascontiguousarray(v).tobytes()).hexdigest()


def selection_digest(symbols: list[str], clusters: list[int]) -> str:
    """`frame_hash(pd.DataFrame({"symbol": symbols, "cluster": clusters}))` (a range index, mixed dtypes)."""
    if not symbols:
        return hashlib.sha256(b"empty").hexdigest()
    rows = sorted(zip((str(i) for i in range(len(symbols))), (str(c) for c in clusters), symbols))
    body = ";".join(f"{c}|{s}" for _, c, s in rows)
    text = f"idx:{','.join(r[0] for r in rows)};cols:cluster,symbol;data:{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def weights_hash(table: str, frame: pd.DataFrame) -> str:
    """The output hash an optimisation records: its weights keyed by atom (sleeves) or child (metas).

    Writers and `explain` share this, so a stored partition can be checked against the ledger.
    """
    key = "atom_id" if table == "sleeve_weights" else "child"
    return weights_digest([str(x) for x in frame[key]], frame["weight"].to_numpy(dtype=float))


@dataclass
class VerifyResult:
    ok: bool
    records: int
    first_broken: int | None = None  # 1-based line number
    reason: str = ""


class AuditLedger:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def in_lakehouse(cls, root: str | os.PathLike) -> AuditLedger:
        return cls(Path(root) / LEDGER_FILE)

    # ---- writing -------------------------------------------------------------------------

    @staticmethod
    def _tail_hash(f) -> str:
        """Hash of the last record, read backwards from the end (no full scan)."""
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end == 0:
            return GENESIS
        size = min(end, 4096)
        while True:
            f.seek(end - size)
            chunk = f.read(size)
            lines = chunk.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or size == end:
                try:
                    return json.loads(lines[-1])["hash"]
                except (json.JSONDecodeError, KeyError):
                    raise AuditLedgerError(
                        f"{f.name}: the last record is incomplete (a writer died mid-append?); "
                        f"nothing more is appended until it is repaired: run `quant-assets audit`") from None
            size = min(end, size * 2)

    def append(self, record: dict) -> dict:
        """Link and append one record atomically with respect to other writers; returns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                full = {**record, "ts": dt.datetime.now(dt.timezone.utc).isoformat(), "prev_hash": self._tail_hash(f)}
                full["hash"] = record_hash(full)
                f.seek(0, os.SEEK_END)
                f.write((_canonical(full) + "\n").encode())
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return full

    def append_pairs(self, pairs: list[tuple[dict, dict]]) -> tuple[int, list[dict]]:
        """Append (intent, outcome) pairs in one locked write, each outcome linked to its intent.

        Returns the byte offset where the batch starts and the records as written (for `verify_batch`).
        """
        if not pairs:
            return -1, []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                prev = self._tail_hash(f)
                f.seek(0, os.SEEK_END)
                offset = f.tell()
                ts = dt.datetime.now(dt.timezone.utc).isoformat()
                written, lines = [], []
                for intent, outcome in pairs:
                    for record in (intent, outcome):
                        full = {**record, "ts": ts, "prev_hash": prev}
                        if record is outcome:
                            full["intent_hash"] = written[-1]["hash"]
                        full["hash"] = record_hash(full)
                        prev = full["hash"]
                        written.append(full)
                        lines.append(_canonical(full))
                f.write(("\n".join(lines) + "\n").encode())
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return offset, written

    def verify_batch(self, offset: int, written: list[dict]) -> VerifyResult:
        """Re-read a batch from disk: every record as written, hashes recomputed, linked in order."""
        if not written:
            return VerifyResult(True, 0)
        with open(self.path, "rb") as f:
            f.seek(offset)
            lines = [line for line in (f.readline() for _ in written)]
        for i, (line, expected) in enumerate(zip(lines, written)):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} is not JSON: {err}")
            if rec != json.loads(_canonical(expected)) or record_hash(rec) != rec.get("hash"):
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} differs from what was appended")
            if i and rec.get("prev_hash") != written[i - 1]["hash"]:
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} is not linked to the one before")
        return VerifyResult(True, len(written))

    def intent(self, *, step: str, asset: str, partition: str, run_id: str, params: dict,
               input_hashes: dict[str, str]) -> dict:
        return self.append({"type": "intent", "step": step, "asset": asset, "partition": partition,
                            "run_id": run_id, "params": params, "input_hashes": input_hashes})

    def outcome(self, intent: dict, *, status: str, output_hash: str | None, detail: dict | None = None) -> dict:
        return self.append({"type": "outcome", "step": intent["step"], "asset": intent["asset"],
                            "partition": intent["partition"], "run_id": intent["run_id"],
                            "intent_hash": intent["hash"], "status": status, "output_hash": output_hash,
                            "detail": detail or {}})

    # ---- reading -------------------------------------------------------------------------

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            return [json.loads(line) for line in f if line.strip()]

    def verify(self) -> VerifyResult:
        """Recompute every hash and link; report the first record that does not match."""
        prev = GENESIS
        n = 0
        if not self.path.exists():
            return VerifyResult(True, 0)
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as err:
                    return VerifyResult(False, n, n, f"line {n} is not JSON: {err}")
                if rec.get("prev_hash") != prev:
                    return VerifyResult(False, n, n, f"line {n}: prev_hash does not match line {n - 1}'s hash")
                if record_hash(rec) != rec.get("hash"):
                    return VerifyResult(False, n, n, f"line {n}: content does not match its hash")
                prev = rec["hash"]
        return VerifyResult(True, n)

    def dangling_intents(self, asset: str | None = None, partitions: set[str] | None = None) -> list[dict]:
        """Intents without an outcome, keeping only the latest intent per (asset, partition).

        A crashed run leaves a dangling intent; re-materialising the partition appends a new
        intent and outcome, which supersedes it (the old one stays in the ledger for the record).
        """
        latest: dict[tuple[str, str], dict] = {}
        done: set[str] = set()
        for rec in self.records():
            if asset is not None and rec.get("asset") != asset:
                continue
            if partitions is not None and rec.get("partition") not in partitions:
                continue
            if rec["type"] == "intent":
                latest[(rec["asset"], rec["partition"])] = rec
            elif rec["type"] == "outcome":
                done.add(rec["intent_hash"])
        return [r for r in latest.values() if r["hash"] not in done]


@dataclass
class OptimisationLog:
    """The ledger entry of one asset partition: every optimisation of its rebalance dates.

    `add` one entry per date as the step computes; `pair` builds the intent (parameters, input
    hashes per date) and the outcome (status per date, weights hash, how they were produced) that
    `AuditLedger.append_pairs` links and writes.
    """

    step: str
    asset: str
    partition: str
    run_id: str
    params: dict
    inputs: dict = field(default_factory=dict)
    entries: list = field(default_factory=list)

    def add(self, date: dt.date, input_hashes: dict[str, str], status: str, output_hash: str | None,
            **detail) -> None:
        self.inputs[date.isoformat()] = input_hashes
        self.entries.append({"rebalance_date": date.isoformat(), "status": status, "output_hash": output_hash,
                             **detail})

    @property
    def status(self) -> str:
        """error if any date failed, fallback if any did not get what it asked for, else success."""
        statuses = {e["status"] for e in self.entries}
        if "error" in statuses:
            return "error"
        return "success" if statuses <= {"success"} else "fallback"

    def pair(self) -> tuple[dict, dict]:
        keys = {"step": self.step, "asset": self.asset, "partition": self.partition, "run_id": self.run_id}
        intent = {"type": "intent", **keys, "params": self.params, "input_hashes": self.inputs}
        joined = "|".join(f"{e['rebalance_date']}:{e['output_hash']}" for e in self.entries)
        outcome = {"type": "outcome", **keys, "status": self.status,
                   "output_hash": hashlib.sha256(joined.encode()).hexdigest(),
                   "detail": {"optimisations": self.entries}}
        return intent, outcome
