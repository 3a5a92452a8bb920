"""The trading calendars' disk cache: a fresh process reads the sessions exchange_calendars built,
without importing it; a request outside the stored span widens it; a broken file is built again."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.data import sessions
from quant_assets_tests.fresh_process import printed_by_fresh_process

PROBE = """
import datetime as dt, sys
from quant_assets.data.sessions import trading_calendar
days = trading_calendar("XNYS").sessions(dt.date.fromisoformat("{a}"), dt.date.fromisoformat("{b}"))
print(len(days), str(days[0]), str(days[-1]), "exchange_calendars" in sys.modules)
"""


def fresh_process(cache, a: str, b: str) -> list[str]:
    """Sessions of XNYS over [a, b] in a new interpreter using `cache`: count, first, last, and
    whether it imported exchange_calendars."""
    return printed_by_fresh_process(PROBE.format(a=a, b=b), **{sessions.CACHE_ENV_VAR: str(cache)})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """This process's caches, emptied, on a disk cache in `tmp_path`."""
    monkeypatch.setenv(sessions.CACHE_ENV_VAR, str(tmp_path))
    for cached in (sessions._cache_dir, sessions.calendar_names):
        cached.cache_clear()
    sessions.trading_calendar.cache_clear()
    monkeypatch.setattr(sessions, "_built", {})
    yield tmp_path
    for cached in (sessions._cache_dir, sessions.calendar_names):
        cached.cache_clear()
    sessions.trading_calendar.cache_clear()


def test_a_fresh_process_reads_the_stored_sessions_without_importing_the_library(cache):
    import exchange_calendars

    first = fresh_process(cache, "2020-01-01", "2020-12-31")
    assert first == ["253", "2020-01-02", "2020-12-31", "True"]  # built: 253 NYSE sessions in 2020
    (folder,) = cache.iterdir()
    assert folder.name == f"sessions-v1-exchange_calendars-{exchange_calendars.__version__}-pandas-{pd.__version__}"
    assert sorted(p.name for p in folder.iterdir()) == ["XNYS.npz", "names.json"]
    again = fresh_process(cache, "2020-01-01", "2020-12-31")
    assert again == ["253", "2020-01-02", "2020-12-31", "False"]  # read, not built
    # 2001-09-11 .. 14: the exchange was shut; the stored sessions are the library's own
    days = sessions.trading_calendar("XNYS").sessions(dt.date(2001, 9, 1), dt.date(2001, 9, 30))
    expected = exchange_calendars.get_calendar("XNYS", start="2001-01-01", end="2001-12-31").sessions
    assert np.array_equal(
        days, expected[(expected >= "2001-09-01") & (expected <= "2001-09-30")].values.astype("datetime64[D]")
    )
    assert np.datetime64("2001-09-11") not in days and np.datetime64("2001-09-17") in days


def test_a_request_outside_the_stored_span_widens_it(cache):
    sessions.trading_calendar("XNYS").sessions(dt.date(2015, 1, 1), dt.date(2016, 12, 31))
    stored = sessions._stored_sessions("XNYS")
    assert stored is not None and (stored[0], stored[1]) == (2015, 2016 + sessions.AHEAD_YEARS)
    sessions._built.clear()  # as a new process: the disk has 2015 .. 2026
    early = sessions.trading_calendar("XNYS").sessions(dt.date(1995, 1, 1), dt.date(1995, 12, 31))
    assert len(early) == 252 and str(early[0]) == "1995-01-03"
    stored = sessions._stored_sessions("XNYS")
    assert stored is not None and (stored[0], stored[1]) == (1995, 2026 + sessions.AHEAD_YEARS)


@pytest.mark.parametrize("broken", [b"not a numpy file", b"", b"PK\x03\x04 a zip cut short"])
def test_a_broken_cache_file_is_built_again(cache, broken):
    sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    (folder,) = cache.iterdir()
    (folder / "XNYS.npz").write_bytes(broken)  # a power cut, a full disk, another program
    (folder / "names.json").write_bytes(broken)
    sessions._built.clear()
    sessions.calendar_names.cache_clear()
    sessions.trading_calendar.cache_clear()
    assert len(sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) == 253
    assert sessions._stored_sessions("XNYS") is not None and "XNYS" in sessions.calendar_names()


def test_a_process_widening_the_file_keeps_what_another_process_stored(cache):
    """This process holds 2015 .. 2026; meanwhile another stored 1995 .. 2036. Asked for 2040, this
    one builds across both spans, so the file it writes does not lose 1995 .. 2014."""
    sessions.trading_calendar("XNYS").sessions(dt.date(2015, 1, 1), dt.date(2016, 12, 31))
    mine = sessions._built["XNYS"]
    sessions._built.clear()
    sessions.trading_calendar("XNYS").sessions(dt.date(1995, 1, 1), dt.date(2026, 12, 31))  # "the other process"
    assert sessions._stored_sessions("XNYS")[:2] == (1995, 2036)
    sessions._built["XNYS"] = mine
    sessions.trading_calendar("XNYS").sessions(dt.date(2040, 1, 1), dt.date(2040, 12, 31))
    assert sessions._stored_sessions("XNYS")[:2] == (1995, 2040 + sessions.AHEAD_YEARS)


def test_a_calendar_named_with_a_slash_is_cached_too(cache):
    days = sessions.trading_calendar("24/5").sessions(dt.date(2020, 1, 1), dt.date(2020, 1, 31))
    assert len(days) == 23 and sessions._stored_sessions("24/5") is not None  # weekdays of January 2020


def test_an_empty_cache_setting_keeps_nothing_on_disk(cache, monkeypatch):
    monkeypatch.setenv(sessions.CACHE_ENV_VAR, "")
    sessions._cache_dir.cache_clear()
    assert len(sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) == 253
    assert list(cache.iterdir()) == []
