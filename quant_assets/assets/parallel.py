"""A step's per-date work on every core: the optimisations of a backfill, in order, in forked workers.

Dagster's in-process executor runs one step at a time, and a step's rebalance dates are independent
until the bookkeeping (ledger, rows, wealth carried forward). So the pure part of each date (pools,
scores, optimisations: numpy only) is mapped over the dates by `in_order`, in worker processes
forked from the step, while the step itself keeps the sequential part. The same maps a sleeve's
lenses (each lens's wealth path), and `by_chunks` splits vectorised work (a universe's features)
into consecutive chunks of dates. Results come back in date
order and are identical to a serial loop (the same code on the same inputs); an exception raised for
a date comes back as a `Raised` in its place, so the caller records the dates before it and the
failure exactly as a serial loop would.

Forked workers inherit the step's memory (the price panel, the selection), so nothing is pickled on
the way in; only each date's result travels back. The work must not touch polars or the lakehouse
(a forked child must not use a thread pool or a file lock its parent held). Workers die with the step
that forked them, so a killed run leaves none behind. Small runs (tests, a weekly update) stay in the
step's process: a pool costs tens of milliseconds to start. `QUANT_ASSETS_WORKERS` sets the number
of workers (default: the cores this process may use; 1 turns it off).
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

WORKERS_ENV = "QUANT_ASSETS_WORKERS"
MIN_ITEMS = 64  # below this many dates a pool costs more than it saves


@dataclass
class Raised:
    """What a date's work raised, in the date's place."""

    error: Exception


def workers() -> int:
    """Worker processes for per-date work: QUANT_ASSETS_WORKERS, else the cores this process may use."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{WORKERS_ENV}={raw!r} is not a whole number of worker processes") from None
    if n < 1:
        raise ValueError(f"{WORKERS_ENV}={raw!r}: need at least 1 (1 runs in the step's own process)")
    return n


_WORK: Callable[[Any], Any] | None = None  # the function of the running map, inherited by forked workers
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_start(parent: int) -> None:
    """A worker dies with the step that forked it (a killed run leaves no worker behind) and leaves
    Ctrl-C to the step, which stops the pool; it keeps no signal handler the step had installed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the step died before the line above took effect
        os._exit(1)


def _call(item: Any) -> Any:
    """In a worker: the running map's function on one item; what it raises travels back as `Raised`."""
    assert _WORK is not None  # set by `in_order` before the pool forks
    out = _guarded(_WORK, item)
    if isinstance(out, Raised):
        # a pickled exception loses its traceback: the worker's is kept as a note on the error
        where = "".join(traceback.format_exception(out.error))
        try:
            pickle.dumps(out.error)
        except Exception:  # an exception that cannot travel back is sent as its text
            out = Raised(RuntimeError(f"{type(out.error).__name__}: {out.error}"))
        out.error.add_note(f"raised in a worker process (QUANT_ASSETS_WORKERS=1 runs it in the step):\n{where}")
    return out


@contextmanager
def in_order(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    min_items: int | None = None,
    preload: Sequence[Callable[[], Any]] = (),
    max_workers: int | None = None,
    head: int = 0,
) -> Iterator[Iterator[Any]]:
    """An iterator of fn(item) for every item, in order: computed in forked workers when there are at
    least `min_items` (default MIN_ITEMS) items and more than one worker, else lazily here. What fn
    raises for an item is yielded as `Raised(error)`. Leaving the block stops the workers (a step
    that fails stops them).

    `preload`: what fn imports on first use (the code location does not import it, so the UI's code
    server and every CLI command start faster), called here before forking so every worker inherits
    it; otherwise each pool's workers import it again (scipy's clustering: 0.2-0.6 s per worker).

    `max_workers`: at most this many workers, for a caller whose own sequential part is as long as
    the work it maps (a meta step): it keeps a core to itself while one worker works ahead. The
    items still go to a worker when `max_workers` is 1, unless workers are off. `head`: the first
    `head` items are computed here, in the caller, while the workers start on the rest (a caller
    that would otherwise wait for the workers' first results)."""
    global _WORK
    items = list(items)
    n = min(workers(), len(items))
    if (
        n <= 1
        or len(items) < (MIN_ITEMS if min_items is None else min_items)
        or mp.current_process().daemon
        or "fork" not in mp.get_all_start_methods()
    ):
        yield (_guarded(fn, item) for item in items)
        return
    n = min(n, max_workers or n)
    for load in preload:
        load()
    _WORK = fn
    # The workers are forked with the step's objects in the collector's permanent generation
    # (`gc.freeze()` just before the fork, as Python's documentation of it suggests for fork
    # without exec; unfrozen in the step right after it): a worker's collections never walk, and so
    # never write to, the objects it shares with the step (reading them still touches their
    # reference counts), and the step's own full collections become rarer (objects alive at a fork
    # skip the promotion count that triggers them; `benchmarks.backfill` prints them). A caller's
    # own freeze is left as it is.
    try:
        freeze = not gc.get_freeze_count()
        if freeze:
            gc.freeze()
        try:
            pool = mp.get_context("fork").Pool(n, initializer=_worker_start, initargs=(os.getpid(),))
        finally:
            if freeze:
                gc.unfreeze()
        rest = items[head:]
        with pool:
            # chunks of at most 64 items: the first results come back soon
            from_workers = pool.imap(_call, rest, chunksize=max(1, min(64, len(rest) // (n * 16))))
            yield itertools.chain((_guarded(fn, item) for item in items[:head]), from_workers)
    finally:
        _WORK = None


def enough(n_dates: int) -> bool:
    """Whether a run of `n_dates` rebalance dates is long enough for workers to pay off."""
    return n_dates >= MIN_ITEMS


def by_chunks(
    fn: Callable[[list], Any], items: Iterable[Any], per_worker: int = 2, preload: Sequence[Callable[[], Any]] = ()
) -> list[Any]:
    """fn over consecutive chunks of `items`, results in order: for vectorised work (one call per
    chunk keeps its arrays large). At least MIN_ITEMS items are split into `per_worker` chunks per
    worker (later dates hold more symbols, so more chunks than workers balance the load) and
    computed in workers; fewer items make one call here. The first chunk's error is raised."""
    items = list(items)
    n = workers()
    if n <= 1 or not enough(len(items)):
        return [fn(items)]
    k = min(len(items), n * per_worker)
    chunks = [items[i * len(items) // k : (i + 1) * len(items) // k] for i in range(k)]
    out = []
    with in_order(fn, chunks, min_items=2, preload=preload) as results:
        for r in results:
            if isinstance(r, Raised):
                raise r.error
            out.append(r)
    return out


def _guarded(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as err:
        return Raised(err)
