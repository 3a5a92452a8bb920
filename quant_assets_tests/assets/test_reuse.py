"""Input fingerprints: which dates of a partition a step may keep (`quant_assets/assets/reuse.py`)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from quant_assets.assets import reuse
from quant_assets.config.manifest import load_manifest
from quant_assets.data.calendars import Periods
from quant_assets.storage.lakehouse import Lakehouse

PERIODS = Periods(load_manifest().calendar)  # weekly Fridays, yearly partitions
D2019, D2020 = PERIODS.dates("2019"), PERIODS.dates("2020")


def _reports(dates, text: str = "x") -> pl.DataFrame:
    """Upstream rows: one per date (any table with a rebalance_date does)."""
    return pl.DataFrame({"rebalance_date": list(dates), "markdown": [text] * len(dates), "meta": "m", "risk": "r"})


def _fingerprints(lh, salt: str = "s"):
    return reuse.upstream_fingerprints(lh, PERIODS, "2020", "2019", ["up"], salt)


@pytest.fixture
def lh(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_partition("meta_report", "up", "2019", _reports(D2019))
    lh.write_partition("meta_report", "up", "2020", _reports(D2020[:30]))
    return lh


def test_a_date_keeps_its_fingerprint_while_only_rows_past_its_horizon_change(lh):
    before = _fingerprints(lh)
    assert list(before) == list(D2020) and len(set(before.values())) == len(D2020)
    lh.write_partition("meta_report", "up", "2020", _reports(D2020[:31]))  # the 31st date's rows arrive
    after = _fingerprints(lh)
    # dates up to the 29th see rows up to the next date only; the 30th's horizon (the 31st) now has rows
    assert [after[d] == before[d] for d in D2020[:31]] == [True] * 29 + [False, False]


def test_a_change_in_an_earlier_period_or_in_the_salt_changes_every_date(lh):
    before = _fingerprints(lh)
    lh.write_partition("meta_report", "up", "2019", _reports(D2019, text="y"))
    assert all(_fingerprints(lh)[d] != before[d] for d in D2020)
    lh.write_partition("meta_report", "up", "2019", _reports(D2019))
    assert _fingerprints(lh) == before  # the same content: the same fingerprints
    assert all(_fingerprints(lh, salt="other")[d] != before[d] for d in D2020)


def test_an_input_written_before_footers_means_every_date_is_computed(lh):
    path = lh.path("meta_report", "up", "2019")
    lh.conform("meta_report", _reports(D2019)).write_parquet(path)  # no footer
    assert _fingerprints(lh) is None
    assert reuse.first_changed(None, None) == dt.date.min


def test_the_own_part_covers_the_assets_earlier_partitions_of_the_same_table(lh):
    upstream = _fingerprints(lh)
    own = reuse.own_fingerprints(lh, PERIODS, "2020", "2019", "meta_report", "up", upstream)
    lh.write_partition("meta_report", "up", "2019", _reports(D2019, text="carried"))
    changed = reuse.own_fingerprints(lh, PERIODS, "2020", "2019", "meta_report", "up", upstream)
    assert all(own[d] != changed[d] for d in D2020)


def test_the_first_changed_date_is_the_first_whose_recorded_fingerprint_differs(lh):
    current = _fingerprints(lh)
    recorded = {d: current[d] for d in D2020[:10]} | {D2020[10]: "stale"}
    lh.write_partition("meta_report", "mine", "2020", _reports(D2020[:11]), inputs=recorded)
    assert reuse.first_changed(lh.footer("meta_report", "mine", "2020"), current) == D2020[10]
    lh.write_partition("meta_report", "mine", "2020", _reports(D2020[:11]), inputs=current)
    assert reuse.first_changed(lh.footer("meta_report", "mine", "2020"), current) is None
    lh.write_partition("meta_report", "mine", "2020", _reports(D2020[:11]))  # no fingerprints recorded
    assert reuse.first_changed(lh.footer("meta_report", "mine", "2020"), current) == D2020[0]
    assert reuse.first_changed(None, current) == D2020[0]  # never written


def test_the_salt_ignores_the_calendars_end_but_not_the_rest_of_the_manifest():
    manifest = load_manifest()
    salt = reuse.salt(manifest)
    later = manifest.model_copy(update={"calendar": manifest.calendar.model_copy(update={"end": None})})
    assert reuse.salt(later) == salt
    tighter = manifest.model_copy(
        update={
            "lookbacks": manifest.lookbacks.model_copy(update={"features_days": manifest.lookbacks.features_days + 1})
        }
    )
    assert reuse.salt(tighter) != salt


def test_a_plugin_registered_from_outside_the_package_is_part_of_the_code_version():
    from quant_assets.selection.rankers import RANKERS, SignalRanker, register_ranker

    class MyRanker(SignalRanker):  # defined here, outside quant_assets/
        name = "my_ranker_for_the_salt"

    before = reuse.code_version()
    register_ranker(MyRanker())
    try:
        assert reuse.code_version() != before
    finally:
        RANKERS.pop(MyRanker.name)
    assert reuse.code_version() == before
    assert "numpy-" in reuse._environment() and "clarabel-" in reuse._environment()  # solvers' versions too
