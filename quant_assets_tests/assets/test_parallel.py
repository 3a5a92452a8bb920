"""Per-date work in forked workers gives exactly what the serial loop gives, in order, failures included."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys

import numpy as np
import polars as pl
import pytest

from quant_assets.assets import parallel
from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.assets.parallel import Raised, by_chunks, in_order, workers
from quant_assets.cli.runner import materialize_range
from quant_assets.config.manifest import load_manifest, parse_manifest
from quant_assets.definitions import build_definitions
from quant_assets.storage.lakehouse import Lakehouse

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _work(i: int):
    """Numpy work that depends on the item, and a failure on item 7."""
    if i == 7:
        raise ValueError(f"item {i} is bad")
    x = np.random.default_rng(i).standard_normal((50, 4))
    return i, np.linalg.eigvalsh(np.cov(x, rowvar=False)), os.getpid()


@pytest.fixture
def forced(monkeypatch):
    """Two workers from the first item on, whatever the machine."""
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    monkeypatch.setattr(parallel, "MIN_ITEMS", 2)


def test_workers_in_forked_processes_equal_the_serial_loop_in_order(forced):
    with in_order(_work, range(40)) as results:
        par = list(results)
    serial = [parallel._guarded(_work, i) for i in range(40)]
    assert [r.error.args for r in par if isinstance(r, Raised)] == [("item 7 is bad",)]
    (note,) = next(r for r in par if isinstance(r, Raised)).error.__notes__
    assert "raised in a worker process" in note and 'raise ValueError(f"item {i} is bad")' in note  # where it was
    assert [r[0] for r in par if not isinstance(r, Raised)] == [i for i in range(40) if i != 7]
    for p, s in zip(par, serial):
        if not isinstance(p, Raised):
            np.testing.assert_array_equal(p[1], s[1])  # bit-identical, not close
    assert {r[2] for r in par if not isinstance(r, Raised)} - {os.getpid()}  # computed elsewhere
    assert parallel._WORK is None  # nothing left behind for the next map


def test_one_worker_works_ahead_while_the_step_computes_the_head(forced):
    """`max_workers=1`: one worker even with two allowed; `head`: the first items in the step."""
    with in_order(_work, range(40), max_workers=1, head=10) as results:
        par = list(results)
    serial = [parallel._guarded(_work, i) for i in range(40)]
    done = [r for r in par if not isinstance(r, Raised)]
    assert [r[0] for r in done] == [i for i in range(40) if i != 7]  # in order, the failure in place
    assert isinstance(par[7], Raised) and par[7].error.args == ("item 7 is bad",)
    assert not getattr(par[7].error, "__notes__", None)  # raised here, in the step: no worker's traceback
    for p, s in zip(par, serial):
        if not isinstance(p, Raised):
            np.testing.assert_array_equal(p[1], s[1])
    assert {r[2] for r in done if r[0] < 10} == {os.getpid()}  # the head, here
    (worker,) = {r[2] for r in done if r[0] >= 10}  # the rest in one worker
    assert worker != os.getpid()


def test_workers_off_keeps_every_item_here_whatever_max_workers(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    monkeypatch.setattr(parallel, "MIN_ITEMS", 2)
    with in_order(_work, range(20), max_workers=1, head=5) as results:
        assert {r[2] for r in results if not isinstance(r, Raised)} == {os.getpid()}


def test_few_items_stay_in_the_steps_process(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    with in_order(_work, range(3)) as results:
        assert {r[2] for r in results} == {os.getpid()}


def test_leaving_the_block_early_stops_the_workers(forced):
    with pytest.raises(RuntimeError, match="the step failed"):
        with in_order(_work, range(40)) as results:
            next(results)
            raise RuntimeError("the step failed")
    assert parallel._WORK is None


def _frozen_in_worker(_item: int) -> bool:
    import gc

    return gc.get_freeze_count() > 0


def test_workers_fork_with_the_steps_objects_frozen_and_the_step_unfreezes_at_once(forced):
    import gc

    assert gc.get_freeze_count() == 0
    with in_order(_frozen_in_worker, range(4)) as results:
        assert gc.get_freeze_count() == 0  # the step's collector is back to normal while the pool works
        assert list(results) == [True] * 4  # each worker's collector skips what it shares with the step
    gc.freeze()  # a caller's own freeze is kept
    try:
        frozen = gc.get_freeze_count()
        with in_order(_frozen_in_worker, range(4)) as results:
            assert list(results) == [True] * 4
        assert gc.get_freeze_count() > 0.9 * frozen  # (objects freed meanwhile leave it)
    finally:
        gc.unfreeze()


def _imported(module: str) -> bool:
    return module in sys.modules


def test_workers_inherit_what_the_work_imports_on_first_use(forced, monkeypatch):
    module = "xml.dom.minidom"  # imported by nothing else in the test process
    monkeypatch.delitem(sys.modules, module, raising=False)
    with in_order(_imported, [module] * 4, preload=[lambda: importlib.import_module(module)]) as results:
        assert list(results) == [True] * 4  # already there when the work started in each worker


def _chunk_sums(chunk: list[int]):
    if 13 in chunk:
        raise ValueError("chunk with 13")
    return [float(np.sqrt(i)) for i in chunk], os.getpid()


def test_chunks_cover_every_item_once_in_order_in_workers(forced):
    out = by_chunks(_chunk_sums, range(12))
    assert len(out) == 4  # two chunks per worker
    assert [v for values, _ in out for v in values] == [float(np.sqrt(i)) for i in range(12)]
    assert {pid for _, pid in out} - {os.getpid()}  # computed elsewhere
    with pytest.raises(ValueError, match="chunk with 13"):
        by_chunks(_chunk_sums, range(20))


def test_few_items_make_one_chunk_here(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    ((values, pid),) = by_chunks(_chunk_sums, range(5))
    assert pid == os.getpid() and len(values) == 5


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(parallel.WORKERS_ENV, value)
    with pytest.raises(ValueError, match=parallel.WORKERS_ENV):
        workers()


def test_worker_count_defaults_to_the_usable_cores(monkeypatch):
    monkeypatch.delenv(parallel.WORKERS_ENV, raising=False)
    assert workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    assert workers() == 1


KILLED_STEP = """
import os, sys, time
from quant_assets.assets import parallel
parallel.MIN_ITEMS = 2
def slow(i):
    time.sleep(60)
with parallel.in_order(slow, range(4)) as results:
    print(os.getpid(), flush=True)
    next(results)
"""


def test_a_killed_step_leaves_no_worker_behind(monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    step = subprocess.Popen([sys.executable, "-c", KILLED_STEP], stdout=subprocess.PIPE, text=True)
    assert step.stdout is not None
    pid = int(step.stdout.readline())
    deadline = time.monotonic() + 20
    children: list[int] = []
    while len(children) < 2 and time.monotonic() < deadline:
        children = [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
        time.sleep(0.05)
    assert len(children) == 2, children
    time.sleep(0.5)  # the workers are in `slow`, past their start-up
    os.kill(pid, signal.SIGKILL)
    step.wait(10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{c}") for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [
        c for c in children if os.path.exists(f"/proc/{c}") and "Z" not in open(f"/proc/{c}/stat").read().split()[2]
    ]
    assert alive == []


def _lakehouse(root, monkeypatch, n_workers: str) -> Lakehouse:
    monkeypatch.setenv(parallel.WORKERS_ENV, n_workers)
    monkeypatch.setattr(parallel, "MIN_ITEMS", 2)
    data = load_manifest().model_dump(mode="json")
    data["calendar"].update(start="2020-01-01", end="2020-04-04", partition="month")
    data["lookbacks"]["meta_min_history_days"] = 10
    manifest = parse_manifest(data)
    defs = build_definitions(manifest, root)
    result = materialize_range(
        defs, manifest, dt.date(2020, 1, 1), dt.date(2020, 3, 31), ephemeral_instance(), run_config=QUIET
    )
    assert result.success
    return Lakehouse(root)


@pytest.mark.slow
def test_the_graph_in_workers_writes_exactly_what_the_serial_graph_writes(tmp_path, monkeypatch):
    here = []  # dates computed in the test's own process
    guarded = parallel._guarded
    monkeypatch.setattr(parallel, "_guarded", lambda fn, item: here.append(item) or guarded(fn, item))
    serial = _lakehouse(tmp_path / "serial", monkeypatch, "1")
    dates = [x for x in here if isinstance(x, dt.date)]
    assert len(dates) == 8 * 13  # 4 funnels and 4 sleeves, 13 dates each
    lens_dates = [x for x in here if isinstance(x, tuple)]  # a meta step's items: (lens, date)
    assert sorted(lens_dates) == sorted((lens, d) for lens in range(5) for d in set(dates) for _ in range(2))
    assert sorted(x for x in here if isinstance(x, str)) == sorted(
        4 * ["barbell", "equal_weight", "hrp", "max_sharpe", "min_variance"]
    )  # each sleeve's 5 lens simulations
    here.clear()
    forked = _lakehouse(tmp_path / "forked", monkeypatch, "2")
    # every date was computed in a worker, but the first half of a meta's first lens (the meta step
    # computes it while its worker starts on the rest)
    first_dates = sorted(set(dates))[: 13 // 2]
    assert sorted(here) == sorted((0, d) for d in first_dates for _ in range(2))
    compared = 0
    for table in (
        "features",
        "clusters",
        "rankings",
        "vetoes",
        "selection",
        "sleeve_weights",
        "sleeve_returns",
        "meta_returns",
        "meta_weights",
        "meta_cluster_tree",
        "meta_portfolio_returns",
        "flattened_weights",
        "flattened_contributions",
    ):
        for folder in sorted((serial.root / table).iterdir()):
            for part in sorted(folder.glob("*.parquet")):
                twin = forked.root / table / folder.name / part.name
                a, b = pl.read_parquet(part), pl.read_parquet(twin)
                assert a.height > 0 or table in ("vetoes",), part
                assert a.equals(b), f"{table}/{folder.name}/{part.name} differs"
                compared += 1
    assert compared > 100


@pytest.mark.parametrize(("preset", "expected"), [(None, 1), ("2", 2)])
def test_polars_runs_on_one_thread_unless_the_environment_says_otherwise(preset, expected):
    """The package sets POLARS_MAX_THREADS=1 before polars is imported (its idle threads spun against
    the step's workers); a value the user set wins."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    if preset is not None:
        env["POLARS_MAX_THREADS"] = preset
    out = subprocess.run(
        [sys.executable, "-c", "import quant_assets, polars; print(polars.thread_pool_size())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout.strip()) == expected
