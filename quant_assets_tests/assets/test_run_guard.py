"""The run guard's overlap rule, on stub run records: both directions, and whose pid a tag is."""

import datetime as dt
import socket
from types import SimpleNamespace

import pytest
from dagster import DagsterRunStatus

from quant_assets.assets import run_guard
from quant_assets.assets.run_guard import OverlappingRunError, process_gone, refuse_overlapping_runs


@pytest.fixture(autouse=True)
def fresh_process():
    run_guard._CLEARED.clear()  # each test is a new process: no run cleared yet


LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def record(run_id, created, start, end, tags=None, status=DagsterRunStatus.STARTED):
    run = SimpleNamespace(
        run_id=run_id,
        status=status,
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end, **(tags or {})},
    )
    # `created`: seconds after a fixed moment long past (so every stub run is settled), unless a datetime
    when = created if isinstance(created, dt.datetime) else LONG_AGO + dt.timedelta(seconds=created)
    return SimpleNamespace(dagster_run=run, create_timestamp=when)


class Instance:
    def __init__(self, *records):
        self.records, self.failed = list(records), []

    def get_run_record_by_id(self, run_id):
        self.by_id = getattr(self, "by_id", 0) + 1
        return next(r for r in self.records if r.dagster_run.run_id == run_id)

    def get_run_records(self, filters):
        self.queries = getattr(self, "queries", 0) + 1
        return self.records

    def report_run_failed(self, run, message):
        self.failed.append(run.run_id)


def two_years_back(key: str) -> str:
    return str(int(key) - 2)


def test_a_later_writer_of_what_an_earlier_run_reads_is_refused():
    # A writes 2020 and reads back to 2018; B writes only 2019: B would rewrite what A reads
    a, b = record("a", 1.0, "2020", "2020"), record("b", 2.0, "2019", "2019")
    with pytest.raises(OverlappingRunError, match="run a "):
        refuse_overlapping_runs(Instance(a, b), "b", ("2017", "2019", "2019"), two_years_back)
    refuse_overlapping_runs(Instance(a, b), "a", ("2018", "2020", "2020"), two_years_back)  # the earlier goes on


def test_runs_far_apart_do_not_block_each_other():
    a, b = record("a", 1.0, "1995", "1996"), record("b", 2.0, "2010", "2012")
    refuse_overlapping_runs(Instance(a, b), "b", ("2008", "2010", "2012"), two_years_back)


def test_a_pid_tag_copied_into_a_re_execution_does_not_mark_it_dead():
    copied = record(
        "child", 1.0, "2020", "2020", {"quant_assets/pid": "999999999", "quant_assets/host": socket.gethostname()}
    )
    copied.dagster_run.tags["quant_assets/run_id"] = "parent"
    assert not process_gone(copied.dagster_run)
    copied.dagster_run.tags["quant_assets/run_id"] = "child"  # its own pid tag, process gone: dead
    assert process_gone(copied.dagster_run)


def test_a_run_cleared_once_is_not_queried_again_for_its_later_steps():
    """The earlier active runs only ever finish, so a span cleared for a run stays clear: its later
    steps skip the queries; another span, or another run, is checked afresh."""
    a, b = record("a", 1.0, "1995", "1996"), record("b", 2.0, "2010", "2012")
    instance = Instance(a, b)
    for _ in range(3):  # three steps of run b
        refuse_overlapping_runs(instance, "b", ("2008", "2010", "2012"), two_years_back)
    assert instance.queries == 1
    refuse_overlapping_runs(instance, "b", ("2007", "2009", "2012"), two_years_back)  # another span
    assert instance.queries == 2
    late = record("c", 3.0, "1995", "1996")  # created after a: a is still active and overlaps
    with pytest.raises(OverlappingRunError, match="run a "):
        refuse_overlapping_runs(Instance(a, late), "c", ("1993", "1995", "1996"), two_years_back)
    with pytest.raises(OverlappingRunError, match="run a "):  # refused runs are never cached
        refuse_overlapping_runs(Instance(a, late), "c", ("1993", "1995", "1996"), two_years_back)


def test_a_run_younger_than_sqlites_busy_timeout_is_checked_at_every_step():
    """A run created just before ours may still be waiting for SQLite's lock to insert its row:
    until ours is older than the busy timeout, every step checks again."""
    now = dt.datetime.now(dt.UTC)
    young = record("y", now, "2010", "2012")
    instance = Instance(record("a", 1.0, "1995", "1996"), young)
    for _ in range(3):
        refuse_overlapping_runs(instance, "y", ("2008", "2010", "2012"), two_years_back)
    assert instance.queries == 3
    young.create_timestamp = now - run_guard.SETTLED_AFTER - dt.timedelta(seconds=1)
    for _ in range(3):
        refuse_overlapping_runs(instance, "y", ("2008", "2010", "2012"), two_years_back)
    assert instance.queries == 4


def test_a_step_costs_one_run_storage_query_when_its_run_is_among_the_active_ones():
    """The checking run is active itself: its record comes with the active ones, so a step makes one
    query (the weekly update's 13 steps made two each); a run not among them is looked up by id."""
    now = dt.datetime.now(dt.UTC)  # young: checked at every step, never cleared
    instance = Instance(record("a", 1.0, "1995", "1996"), record("y", now, "2010", "2012"))
    for _ in range(3):
        refuse_overlapping_runs(instance, "y", ("2008", "2010", "2012"), two_years_back)
    assert (instance.queries, getattr(instance, "by_id", 0)) == (3, 0)
    listed = instance.records[:1]  # y not listed as active (a stub: Dagster lists a running run)
    instance.get_run_records = lambda filters: listed
    refuse_overlapping_runs(instance, "y", ("2008", "2010", "2012"), two_years_back)
    assert instance.by_id == 1
