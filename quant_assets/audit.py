"""Append-only, hash-chained audit ledger of every optimisation (domain-spec §7).

Each optimisation writes an *intent* (inputs' hashes, parameters) before it runs and an
*outcome* (success / fallback / error, output hash) after. Every record carries the previous
record's hash and its own: ``hash = sha256(canonical JSON of the record without "hash")``, so
editing, deleting or reordering any record breaks the chain at that point, and `verify` names the
first broken link. Records carry Dagster's run id, asset key and partition: the join keys to
lineage. Re-materialising a partition appends new linked records; history is never rewritten.

Appends from concurrent processes are serialised with an exclusive ``flock`` on the ledger file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
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


def frame_hash(frame: pd.DataFrame | pd.Series) -> str:
    """Deterministic hash of a frame's content: columns and rows sorted, floats to 8 decimals.

    Independent of column order, row order and dtype details, so the same numbers always hash the
    same (domain-spec §7).
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame(name=str(frame.name))
    if frame.empty:
        return hashlib.sha256(b"empty").hexdigest()
    df = frame.copy()
    df.columns = [str(c) for c in df.columns]
    df = df[sorted(df.columns)]
    df.index = [_fmt(i) for i in df.index]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes):
        # Fast path (optimiser inputs): rows ordered by index then values, floats rounded to 8
        # decimals as IEEE bytes (-0.0 folded into 0.0, one canonical NaN).
        values = np.round(df.to_numpy(dtype=float), 8) + 0.0
        values[np.isnan(values)] = np.nan
        order = np.lexsort([*values.T[::-1], np.asarray(df.index, dtype=object).astype(str)])
        text = f"idx:{','.join(np.asarray(df.index)[order])};cols:{','.join(df.columns)};data:"
        return hashlib.sha256(text.encode() + np.ascontiguousarray(values[order]).tobytes()).hexdigest()
    cells = df.map(_fmt)
    cells = cells.assign(__idx=cells.index).sort_values(["__idx", *df.columns])
    body = ";".join("|".join(row) for row in cells.drop(columns="__idx").itertuples(index=False, name=None))
    text = f"idx:{','.join(cells['__idx'])};cols:{','.join(df.columns)};data:{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def weights_hash(table: str, frame: pd.DataFrame) -> str:
    """The output hash an optimisation records: its weights keyed by atom (sleeves) or child (metas).

    Writers and `explain` share this, so a stored partition can be checked against the ledger.
    """
    key = "atom_id" if table == "sleeve_weights" else "child"
    return frame_hash(frame.set_index(key)["weight"])


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
