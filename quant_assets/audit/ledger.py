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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from quant_assets.data.hashing import (  # noqa: F401  (re-exported: the ledger's vocabulary)
    frame_hash,
    iso_days,
    matrix_digest,
    selection_digest,
    weights_digest,
    weights_hash,
)
from quant_assets.storage.lakehouse import LEDGER_FILE

GENESIS = "0" * 64


class AuditLedgerError(RuntimeError):
    """The ledger cannot be appended to safely; the message names the file and what to do."""


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def _as_read(record: dict) -> dict:
    """The record as a reader parses it back: hashed in this form, its hash recomputes from the line
    (keys that are not strings, such as ints, become strings and sort differently once read)."""
    return json.loads(_canonical(record))


def record_hash(record: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()


@dataclass
class VerifyResult:
    ok: bool
    records: int
    first_broken: int | None = None  # 1-based line number
    reason: str = ""


# path -> (inode, bytes verified, hash of the last verified record, lines verified), this process
_VERIFIED: dict[str, tuple[int, int, str, int]] = {}


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
                    # a record cut before its newline is incomplete too: the next one would join its line
                    last = json.loads(lines[-1])["hash"] if chunk.endswith(b"\n") else None
                except (json.JSONDecodeError, KeyError):
                    last = None
                if last is None:
                    raise AuditLedgerError(
                        f"{f.name}: the last record is incomplete (a writer died mid-append?); "
                        f"nothing more is appended until it is repaired: run `quant-assets audit`"
                    )
                return last
            size = min(end, size * 2)

    def append(self, record: dict) -> dict:
        """Link and append one record atomically with respect to other writers; returns it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                full = _as_read({**record, "ts": dt.datetime.now(dt.UTC).isoformat(), "prev_hash": self._tail_hash(f)})
                full["hash"] = record_hash(full)
                f.seek(0, os.SEEK_END)
                f.write((_canonical(full) + "\n").encode())
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return full

    def append_pairs(self, pairs: list[tuple[dict, dict]]) -> tuple[int, bytes]:
        """Append (intent, outcome) pairs in one locked write, each outcome linked to its intent.

        Returns the byte offset where the batch starts and the bytes written (for `verify_batch`;
        the records themselves are not kept: a backfill's batches hold a record per partition with
        an entry per date, and holding their parsed copies cost the steps' process extra full
        garbage collections).
        """
        if not pairs:
            return -1, b""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                prev = self._tail_hash(f)
                f.seek(0, os.SEEK_END)
                offset = f.tell()
                ts = dt.datetime.now(dt.UTC).isoformat()
                lines: list[str] = []
                for intent, outcome in pairs:
                    for record in (intent, outcome):
                        full = _as_read({**record, "ts": ts, "prev_hash": prev})
                        if record is outcome:
                            full["intent_hash"] = prev  # the intent's, just written
                        prev = full["hash"] = record_hash(full)
                        lines.append(_canonical(full))
                data = ("\n".join(lines) + "\n").encode()
                f.write(data)
                f.flush()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return offset, data

    def verify_batch(self, offset: int, data: bytes) -> VerifyResult:
        """Re-read a batch from disk: the bytes as written (its records were hashed and linked as they
        were written, so equal bytes are an intact, linked batch); when they differ, the first record
        that differs is named. A batch appended right after the part of the chain `check_chain`
        verified extends that part: the next step's check does not read it again."""
        written = data.splitlines(keepends=True)
        if not written:
            return VerifyResult(True, 0)
        with open(self.path, "rb") as f:
            f.seek(offset)
            if f.read(len(data)) == data:
                self._extend_verified(os.fstat(f.fileno()).st_ino, offset, written, len(data))
                return VerifyResult(True, len(written))
            f.seek(offset)
            lines = [line for line in (f.readline() for _ in written)]
        expected = [json.loads(line) for line in written]
        for i, (line, want) in enumerate(zip(lines, expected)):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} is not JSON: {err}")
            if rec != want or record_hash(rec) != rec.get("hash"):
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} differs from what was appended")
            if i and rec.get("prev_hash") != expected[i - 1]["hash"]:
                return VerifyResult(False, i + 1, i + 1, f"batch record {i + 1} is not linked to the one before")
        return VerifyResult(True, len(written))

    def _extend_verified(self, read_inode: int, offset: int, lines: list[bytes], size: int) -> None:
        """`read_inode`: the file the batch was re-read from (not whatever the path names now)."""
        key = str(self.path.resolve())
        entry = _VERIFIED.get(key)
        if entry is None:
            return
        inode, verified_to, prev, line_no = entry
        if verified_to == offset and inode == read_inode and json.loads(lines[0])["prev_hash"] == prev:
            _VERIFIED[key] = (inode, offset + size, json.loads(lines[-1])["hash"], line_no + len(lines))

    def intent(
        self, *, step: str, asset: str, partition: str, run_id: str, params: dict, input_hashes: dict[str, str]
    ) -> dict:
        return self.append(
            {
                "type": "intent",
                "step": step,
                "asset": asset,
                "partition": partition,
                "run_id": run_id,
                "params": params,
                "input_hashes": input_hashes,
            }
        )

    def outcome(self, intent: dict, *, status: str, output_hash: str | None, detail: dict | None = None) -> dict:
        return self.append(
            {
                "type": "outcome",
                "step": intent["step"],
                "asset": intent["asset"],
                "partition": intent["partition"],
                "run_id": intent["run_id"],
                "intent_hash": intent["hash"],
                "status": status,
                "output_hash": output_hash,
                "detail": detail or {},
            }
        )

    # ---- reading -------------------------------------------------------------------------

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise AuditLedgerError(
                        f"{self.path}: line {n} is not a JSON record ({err}); `quant-assets audit` checks the "
                        "whole chain"
                    ) from None
        return out

    def verify(self) -> VerifyResult:
        """Recompute every hash and link; report the first record that does not match."""
        return self._verify_from(0, GENESIS, 0)[0]

    def _verify_from(self, offset: int, prev: str, line_no: int) -> tuple[VerifyResult, int, str]:
        """Verify the records from byte `offset` (line `line_no` + 1), linked to `prev`; returns the
        result, the offset verified up to and the last hash (to resume from)."""
        n = line_no
        if not self.path.exists():
            return VerifyResult(True, 0), 0, GENESIS
        with open(self.path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH)  # an append in progress (LOCK_EX) is never read half-written
            f.seek(offset)
            for raw in f:
                n += 1
                if raw.strip():
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError as err:
                        return VerifyResult(False, n, n, f"line {n} is not JSON: {err}"), offset, prev
                    if rec.get("prev_hash") != prev:
                        reason = f"line {n}: prev_hash does not match line {n - 1}'s hash"
                        return VerifyResult(False, n, n, reason), offset, prev
                    if record_hash(rec) != rec.get("hash"):
                        return VerifyResult(False, n, n, f"line {n}: content does not match its hash"), offset, prev
                    prev = rec["hash"]
                offset += len(raw)
        return VerifyResult(True, n), offset, prev

    def check_chain(self) -> None:
        """Refuse to build on a broken ledger: raises naming the first bad line. Run by a step before it
        writes anything, so a bad ledger never leaves the lakehouse and Dagster disagreeing.

        The ledger only grows, so the part verified before (in this process) is not verified again:
        a run checks each record once, however many steps it has.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        key = str(self.path.resolve())
        inode, offset, prev, line_no = _VERIFIED.get(key, (st.st_ino, 0, GENESIS, 0))
        if inode != st.st_ino or offset > st.st_size:  # replaced or truncated: start over
            offset, prev, line_no = 0, GENESIS, 0
        result, offset, prev = self._verify_from(offset, prev, line_no)
        if not result.ok:
            _VERIFIED.pop(key, None)
            raise AuditLedgerError(
                f"audit ledger {self.path} is broken at {result.reason}; nothing was written. Repair or restore "
                "the ledger (`quant-assets audit` shows the line) before materialising"
            )
        _VERIFIED[key] = (st.st_ino, offset, prev, result.records)

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

    def add(self, date: dt.date, input_hashes: dict[str, str], status: str, output_hash: str | None, **detail) -> None:
        self.inputs[date.isoformat()] = input_hashes
        self.entries.append(
            {"rebalance_date": date.isoformat(), "status": status, "output_hash": output_hash, **detail}
        )

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
        outcome = {
            "type": "outcome",
            **keys,
            "status": self.status,
            "output_hash": hashlib.sha256(joined.encode()).hexdigest(),
            "detail": {"optimisations": self.entries},
        }
        return intent, outcome


class LedgerBatch:
    """The optimisation logs of one step, written to the ledger as one batch.

    Every optimisation of the step runs inside `recording(log, date, inputs)`: if it raises, the
    date is logged as an error and everything logged so far is appended before the exception
    propagates, so no intent is left without an outcome. After the loop, `commit()` appends the
    batch and re-reads it from disk (the `audit_complete` check).
    """

    def __init__(self, ledger: AuditLedger, logs: Iterable[OptimisationLog]):
        self.ledger, self.logs = ledger, list(logs)

    def _pairs(self) -> list[tuple[dict, dict]]:
        return [log.pair() for log in self.logs if log.entries]

    @contextmanager
    def recording(self, log: OptimisationLog, date: dt.date, inputs: dict[str, str]) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            log.add(date, inputs, "error", None, error=repr(err)[:300])
            self.ledger.append_pairs(self._pairs())
            raise

    def commit(self) -> tuple[VerifyResult, int]:
        """Append the batch; the verification of what was written and the number of records."""
        offset, data = self.ledger.append_pairs(self._pairs())
        return self.ledger.verify_batch(offset, data), data.count(b"\n")
