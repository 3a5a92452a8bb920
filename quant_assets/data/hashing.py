"""Content hashes of frames and arrays: what the audit ledger records as an optimisation's inputs
and outputs, and what `explain` recomputes from stored partitions to compare with it.

`frame_hash` is the definition (index, columns and values rounded to 8 decimals, order-independent);
the `*_digest` functions compute the same hash straight from arrays, for the per-date loops, without
building a frame.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

import numpy as np
import pandas as pd


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "nan"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.8f}"
    if isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):
        return (
            pd.Timestamp(v).tz_localize(None).isoformat() if getattr(v, "tzinfo", None) else pd.Timestamp(v).isoformat()
        )
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
    days = np.asarray(days)
    if days.dtype == "datetime64[D]":  # whole days (every window): memoised, each day is hashed thousands of times
        return [_iso_day(d) for d in days.tolist()]
    return np.datetime_as_string(days.astype("datetime64[s]"), unit="s").tolist()


@functools.lru_cache(maxsize=1 << 16)
def _iso_day(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00"


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


ROWS_SEED = 20_240_611  # polars' row hash is stable within one polars version (the reuse salt names it)


def prefix_hashes(frame, column: str | None) -> tuple[list[dt.date], list[int], int]:
    """Cumulative content hashes of a (polars) frame's rows, by date: for each distinct date of
    `column`, ascending, a 64-bit hash of every row dated up to and including it; and the hash of
    all rows. A row's hash is polars' `hash_rows` of all its values, multiplied by an odd number
    that grows with its position in date order (stable sort), so the hash sees the rows' order as
    well as their content; sums wrap modulo 2**64. The prefix up to D depends only on the rows dated
    up to D, so a reader can tell whether the part of a file it used is unchanged even when rows
    after its horizon were added. `column` None: only the whole-file hash. Polars hashes 0.0 and
    -0.0 alike, and every NaN alike: an upstream row that changes only a zero's sign or a NaN's
    payload goes unseen."""
    n = frame.height
    if not n:
        return [], [], 0
    h = frame.hash_rows(seed=ROWS_SEED).to_numpy()
    position = 2 * np.arange(n, dtype=np.uint64) + np.uint64(1)
    if column is None:
        return [], [], int(np.cumsum(h * position)[-1])
    days = frame[column].to_numpy()
    order = np.argsort(days, kind="stable")
    days = days[order]
    cumulative = np.cumsum(h[order] * position)
    last = np.flatnonzero(np.r_[days[1:] != days[:-1], True])
    return days[last].astype("datetime64[D]").tolist(), cumulative[last].tolist(), int(cumulative[-1])
