"""One writer per stretch of history: a run refuses to start a step while an earlier run is still
materialising partitions it writes or reads.

Two backfills over overlapping ranges used to both succeed with wrong numbers: the later one read
partitions the other was rewriting (a sleeve's wealth carry restarted at the wrong level, a meta's
joined history lost a third of its rows). Runs launched from the UI queue behind each other
(`max_concurrent_runs: 1` in dagster.yaml); runs started in process by the command line bypass
that queue, so every step checks here, before it reads or writes anything, whether an *earlier*
run that is still queued or running covers an overlapping span (its partitions, and the earlier
periods this run's trailing windows read). The later run stops with an error naming the earlier
one; the earlier run goes on, so the lakehouse ends as one clean run leaves it.

A run killed outright (SIGKILL, a power cut) stays STARTED in the instance forever, which would
block every later run. Runs the command line starts carry their process id and host; if that
process is gone, the run is reported failed (and said so) instead of blocking. Runs launched by the
UI's run launcher are watched by Dagster's run monitoring (enabled in dagster.yaml).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from quant_assets.storage.lakehouse import pid_alive

PID_TAG = "quant_assets/pid"
HOST_TAG = "quant_assets/host"
RUN_TAG = "quant_assets/run_id"  # whose pid it is: a re-execution copies its parent's tags
ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,  # may still be writing
]


class OverlappingRunError(RuntimeError):
    """An earlier run is still materialising partitions this run would write or read."""


def process_tags(run_id: str) -> dict[str, str]:
    """Tags of run `run_id` executed in this process (the command line's in-process runs)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), RUN_TAG: run_id}


def partition_span(run: DagsterRun) -> tuple[str, str] | None:
    """(first, last) partition key of a run, from its tags; None for an unpartitioned run."""
    tags = run.tags
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return tags[ASSET_PARTITION_RANGE_START_TAG], tags.get(ASSET_PARTITION_RANGE_END_TAG, "")
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG], tags[PARTITION_NAME_TAG]
    return None


def process_gone(run: DagsterRun) -> bool:
    """True when the run was started in process on this host by a process that no longer exists."""
    pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
    if pid is None or host != socket.gethostname() or run.tags.get(RUN_TAG) != run.run_id:
        return False
    return not pid_alive(int(pid))


# (run id, span) of runs this process has already cleared. The runs a check can find only ever
# leave the set it looks at: they were created before the checking run (a run created later never
# counts), and a run that is done never becomes active again (a re-execution is a new, later run).
# One exception: a run's creation time is taken before its row is inserted, and an insert may wait
# for SQLite's lock for up to its busy timeout, so a run created "earlier" can appear that long
# after. So a run is cleared for good only once it is older than that; from then on its later
# steps in this process (a long backfill's steps under the in-process executor) skip the
# run-storage query.
SETTLED_AFTER = dt.timedelta(seconds=SQLITE_BUSY_TIMEOUT_SECONDS + 5)
_CLEARED: set[tuple[str, tuple[str, str, str]]] = set()


def refuse_overlapping_runs(
    instance: DagsterInstance, run_id: str, span: tuple[str, str, str], first_read: Callable[[str], str]
) -> None:
    """Raise OverlappingRunError if a run created before `run_id` and still active writes partitions
    this run reads or writes (`span`: first key read, first and last key written), or reads partitions this
    run writes (`first_read` maps a run's first written key to the first key its windows read).
    Keys of one time partitioning compare as strings."""
    if (run_id, span) in _CLEARED:
        return
    # One query per step: the checking run is active itself, so it is among the active records (the
    # weekly update's 13 steps each paid a second query for it, ~10 ms each on the persistent instance).
    active = instance.get_run_records(RunsFilter(statuses=ACTIVE))
    me = next((r for r in active if r.dagster_run.run_id == run_id), None) or instance.get_run_record_by_id(run_id)
    if me is None:
        return
    mine = (me.create_timestamp, run_id)
    for record in active:
        other = record.dagster_run
        if other.run_id == run_id or (record.create_timestamp, other.run_id) > mine:
            continue  # the later of two overlapping runs is the one that yields
        theirs = partition_span(other)
        if theirs is None:
            continue
        writes_what_we_read = not (theirs[1] < span[0] or span[2] < theirs[0])
        reads_what_we_write = not (theirs[1] < span[1] or span[2] < first_read(theirs[0]))
        if not (writes_what_we_read or reads_what_we_write):
            continue
        if process_gone(other):
            instance.report_run_failed(
                other,
                f"quant_assets: the process that ran this run (pid {other.tags[PID_TAG]}) is gone; marked failed "
                f"by run {run_id[:8]} so it no longer holds partitions {theirs[0]}..{theirs[1]}",
            )
            continue
        raise OverlappingRunError(
            f"run {other.run_id[:8]} ({other.status.value}, partitions {theirs[0]}..{theirs[1]}) is still "
            f"materialising history this run writes or reads ({span[0]}..{span[2]}); this run stops before "
            "writing anything. Wait for it to finish, or cancel it (`make ui` -> Runs), then run again."
        )
    if _now() - me.create_timestamp > SETTLED_AFTER:
        if len(_CLEARED) >= 10_000:  # a long-lived process (a sensor daemon) keeps only recent runs
            _CLEARED.clear()
        _CLEARED.add((run_id, span))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
