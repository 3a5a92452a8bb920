"""The trading calendars' disk cache: a fresh process reads the sessions exchange_calendars built,
without importing it; a request outside the stored span widens it; a broken file is built again."""

import datetime as dt

import numpy as np
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
    assert folder.name == f"exchange_calendars-{exchange_calendars.__version__}"
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


def test_a_broken_cache_file_is_built_again(cache):
    sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    (folder,) = cache.iterdir()
    (folder / "XNYS.npz").write_bytes(b"not a numpy file")
    (folder / "names.json").write_text("{not json")
    sessions._built.clear()
    sessions.calendar_names.cache_clear()
    sessions.trading_calendar.cache_clear()
    assert len(sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) == 253
    assert sessions._stored_sessions("XNYS") is not None and "XNYS" in sessions.calendar_names()


def test_an_empty_cache_setting_keeps_nothing_on_disk(cache, monkeypatch):
    monkeypatch.setenv(sessions.CACHE_ENV_VAR, "")
    sessions._cache_dir.cache_clear()
    assert len(sessions.trading_calendar("XNYS").sessions(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) == 253
    assert list(cache.iterdir()) == []
