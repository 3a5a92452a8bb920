"""Fault drills with real processes on a persistent instance: a backfill killed mid-run and re-run,
and two overlapping backfills at once. Each ends with the lakehouse equal to one clean run's.

Slow (real interpreters, ~1.5 min together): excluded from `make test-fast`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.cli.runner import materialize_range
from quant_assets.config.manifest import load_manifest
from quant_assets.definitions import build_definitions

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START, END = "1992-01-01", "1993-12-31"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The lakehouse one clean in-process run of the range leaves."""
    root = tmp_path_factory.mktemp("clean")
    manifest = load_manifest()
    defs = build_definitions(manifest, str(root))
    start, end = dt.date.fromisoformat(START), dt.date.fromisoformat(END)
    assert materialize_range(defs, manifest, start, end, ephemeral_instance(), run_config=QUIET).success
    return root


def home_and_lakehouse(tmp_path: Path) -> tuple[Path, Path]:
    home, lakehouse = tmp_path / "home", tmp_path / "lakehouse"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home, lakehouse


def backfill(home: Path, lakehouse: Path, start: str, end: str) -> subprocess.Popen:
    env = dict(os.environ, DAGSTER_HOME=str(home), QUANT_ASSETS_LAKEHOUSE=str(lakehouse), QUANT_ASSETS_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "quant_assets.cli.main", "backfill", "--start", start, "--end", end],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


def runs(home: Path) -> list:
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)  # the batched event log finds its files there
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            return [r.dagster_run for r in instance.get_run_records()]
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous


def tables(root: Path) -> dict[str, pl.DataFrame]:
    """Every Parquet file of a lakehouse by its path under the root (temp files would show up too)."""
    return {str(p.relative_to(root)): pl.read_parquet(p) for p in sorted(root.rglob("*.parquet"))}


def assert_same_lakehouse(root: Path, clean: Path) -> None:
    ours, theirs = tables(root), tables(clean)
    assert sorted(ours) == sorted(theirs)
    for name, frame in theirs.items():
        assert ours[name].equals(frame), name  # values, dtypes, row order: bit for bit
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_backfill_killed_mid_run_and_run_again_equals_a_clean_run(tmp_path, clean):
    home, lakehouse = home_and_lakehouse(tmp_path)
    first = backfill(home, lakehouse, START, END)
    # kill it once some sleeve weights are stored, that is in the middle of the graph
    wait_for(lambda: any((lakehouse / "sleeve_weights").rglob("*.parquet")), 240, "the first sleeve weights")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = [r for r in runs(home) if r.status == DagsterRunStatus.STARTED]
    assert len(killed) == 1  # what a SIGKILL leaves: a run STARTED forever

    again = backfill(home, lakehouse, START, END)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    status = {r.run_id: r.status for r in runs(home)}
    assert status[killed[0].run_id] == DagsterRunStatus.FAILURE  # reported failed by the re-run
    assert_same_lakehouse(lakehouse, clean)
    audit = subprocess.run(
        [sys.executable, "-m", "quant_assets.cli.main", "audit"],
        cwd=REPO,
        env=dict(os.environ, QUANT_ASSETS_LAKEHOUSE=str(lakehouse)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert (
        "chain intact" in audit.stdout and "intents without an outcome (latest per asset partition): 0" in audit.stdout
    )


def test_two_overlapping_backfills_at_once_serialise_and_equal_a_clean_run(tmp_path, clean):
    home, lakehouse = home_and_lakehouse(tmp_path)
    first = backfill(home, lakehouse, START, END)
    wait_for(lambda: any(r.status == DagsterRunStatus.STARTED for r in runs(home)), 120, "the first run to start")
    second = backfill(home, lakehouse, "1993-01-01", "1994-12-31")
    out2, _ = second.communicate(timeout=600)
    out1, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out1
    assert second.returncode == 1, out2
    assert "is still materialising history this run writes or reads" in out2
    assert "Traceback" not in out2
    assert_same_lakehouse(lakehouse, clean)  # the later run wrote nothing
