"""Writing a Parquet file so that a reader never sees half of it.

The frame goes to a temporary name in the same folder (the writer's pid in it, so a later writer
can tell a dead writer's leftovers from a live one's), then `os.replace` renames it over the
target: on one filesystem the rename is atomic, so the target is either the old file or the new
one, whatever kills the process. Used by the lakehouse's partitions and the ingest store
(`write_parquet_atomic`), and by the trading calendars' disk cache (`replace_atomic`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def replace_atomic(target: Path, write: Callable[[Path], object]) -> None:
    """Replace `target` with what `write(path)` writes to a temporary path, in one rename."""
    tmp = _temporary(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet_atomic(frame: pl.DataFrame, target: Path, metadata: dict[str, str] | None = None) -> os.stat_result:
    """Replace `target` with `frame` in one rename (the folder must exist); `metadata` goes into the
    file's footer (key-value pairs), so it is replaced with the rows, never apart from them. Returns
    the written file's status, taken before the rename: the rename keeps inode, mtime and size, so
    it identifies our file even if another writer replaces `target` right after."""
    tmp = _temporary(target)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True, metadata=metadata)
        written = tmp.stat()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written
