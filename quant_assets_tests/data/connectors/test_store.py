"""The ingest store: incremental sync, failures that do not stop the others, recovery, point in time."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_assets.data.connectors.base import BAR_SCHEMA, Connector, FetchFailed, Listing
from quant_assets.data.connectors.store import ConnectorSource
from quant_assets.storage.lakehouse import Lakehouse

DAY = dt.timedelta(days=1)


class FakeVenue(Connector):
    """Three markets with deterministic daily bars from their listing day on; records every request."""

    kind = "fake"

    def __init__(self):
        self.first = {"X:AAA": dt.date(2021, 1, 1), "X:BBB": dt.date(2021, 1, 1), "X:CCC": dt.date(2021, 2, 1)}
        self.volume = {"X:AAA": 10.0, "X:BBB": 1000.0, "X:CCC": 100.0}
        self.requests: list[tuple[str, dt.date, dt.date]] = []
        self.broken: set[str] = set()
        self.restated: dict[tuple[str, dt.date], float] = {}

    def listings(self):
        return [Listing(s, s.split(":")[1], "X", "spot", None, self.volume[s]) for s in self.first]

    def close(self, symbol, day):
        return self.restated.get((symbol, day), 100.0 + (day - dt.date(2021, 1, 1)).days)

    def bars(self, listing, start, end):
        self.requests.append((listing.symbol, start, end))
        if listing.symbol in self.broken:
            raise FetchFailed(listing.symbol, 4, ConnectionError("503 Service Unavailable"))
        days = [start + i * DAY for i in range((end - start).days + 1)]
        days = [d for d in days if d >= self.first[listing.symbol]]
        closes = [self.close(listing.symbol, d) for d in days]
        return pl.DataFrame(
            {
                "date": days,
                "open": closes,
                "high": [c * 1.01 for c in closes],
                "low": [c * 0.99 for c in closes],
                "close": closes,
                "volume": [self.volume[listing.symbol]] * len(days),
            },
            schema=BAR_SCHEMA,
        )


def clock(day: dt.date):
    return lambda: dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)


@pytest.fixture
def venue():
    return FakeVenue()


def source(venue, root, today=dt.date(2021, 4, 1), **kw):
    return ConnectorSource("venue", venue, root, clock=clock(today), **kw)


def test_a_sync_asks_only_for_missing_days_and_restates_the_last(venue, tmp_path):
    src = source(venue, tmp_path)
    first = src.sync(dt.date(2021, 1, 1), dt.date(2021, 1, 31))
    assert first.counts() == {"ok": 3, "up_to_date": 0, "failed": 0, "recovered": 0, "bars": 62}  # CCC: none yet
    assert sorted(venue.requests) == [
        (s, dt.date(2021, 1, 1), dt.date(2021, 1, 31)) for s in ("X:AAA", "X:BBB", "X:CCC")
    ]
    venue.requests.clear()
    second = src.sync(dt.date(2021, 1, 1), dt.date(2021, 2, 28))
    # only February, plus the last stored day (overlap_days=1, vendors restate it)
    assert sorted(venue.requests) == [
        (s, dt.date(2021, 1, 31), dt.date(2021, 2, 28)) for s in ("X:AAA", "X:BBB", "X:CCC")
    ]
    assert second.counts()["bars"] == 29 * 2 + 28 and not second.log["rescaled"].any()  # CCC lists 1 February
    aaa = src.bars(["X:AAA"], dt.date(2021, 1, 1), dt.date(2021, 2, 28))
    assert aaa.height == 59 and aaa["date"].is_unique().all()
    venue.requests.clear()
    third = src.sync(dt.date(2021, 1, 10), dt.date(2021, 2, 20))  # inside the cover: nothing to ask
    assert venue.requests == [] and third.counts()["up_to_date"] == 3
    # CCC was asked for January and got nothing (listed in February): January is not asked again
    assert src.cover()["X:CCC"][:2] == (dt.date(2021, 1, 1), dt.date(2021, 2, 28))


def test_a_rescaled_history_is_fetched_again_whole(venue, tmp_path):
    """An adjusted series after a 2:1 split: the vendor now shows every close at half its old value.
    Appending to the stored (old) scale would fake a -50 % return; the re-fetched overlap day
    differs from the stored one, so the whole cover is fetched again and replaced."""
    src = source(venue, tmp_path)
    src.sync(dt.date(2021, 1, 1), dt.date(2021, 1, 31))
    for i in range(59):
        d = dt.date(2021, 1, 1) + i * DAY
        venue.restated[("X:AAA", d)] = venue.close("X:AAA", d) / 2
    venue.requests.clear()
    report = src.sync(dt.date(2021, 1, 1), dt.date(2021, 2, 28))
    row = report.log.filter(pl.col("symbol") == "X:AAA").row(0, named=True)
    assert row["rescaled"] and row["fetched_from"] == dt.date(2021, 1, 1) and row["bars"] == 59
    assert ("X:AAA", dt.date(2021, 1, 1), dt.date(2021, 2, 28)) in venue.requests
    closes = src.bars(["X:AAA"], dt.date(2021, 1, 1), dt.date(2021, 2, 28))["close"].to_numpy()
    assert closes[0] == 50.0 and closes[30] == 65.0  # 31 January on the new scale
    assert np.abs(np.diff(closes) / closes[:-1]).max() < 0.011  # no -50 % seam where the syncs meet
    assert not report.log.filter(pl.col("symbol") != "X:AAA")["rescaled"].any()


def test_spans_that_do_not_touch_keep_the_cover_contiguous(venue, tmp_path):
    src = source(venue, tmp_path)
    src.sync(dt.date(2021, 1, 1), dt.date(2021, 1, 10))
    venue.requests.clear()
    src.sync(dt.date(2021, 3, 1), dt.date(2021, 3, 10))  # the gap 11 January .. 28 February is fetched too
    assert ("X:AAA", dt.date(2021, 1, 10), dt.date(2021, 3, 10)) in venue.requests
    assert src.bars(["X:AAA"], dt.date(2021, 1, 1), dt.date(2021, 3, 10)).height == 69
    venue.requests.clear()
    src.sync(dt.date(2020, 12, 1), dt.date(2020, 12, 5))  # before the cover: up to its first day
    assert ("X:AAA", dt.date(2020, 12, 1), dt.date(2020, 12, 31)) in venue.requests
    assert src.cover()["X:AAA"][:2] == (dt.date(2020, 12, 1), dt.date(2021, 3, 10))


def test_re_running_covered_history_asks_the_venue_nothing(venue, tmp_path):
    src = source(venue, tmp_path)
    src.sync(dt.date(2021, 1, 1), dt.date(2021, 3, 31))

    class Offline(FakeVenue):
        def listings(self):
            raise ConnectionError("no network")

    src.connector = Offline()
    report = src.sync(dt.date(2021, 2, 1), dt.date(2021, 2, 28))
    assert report.counts()["up_to_date"] == 3 and src.connector.requests == []


def test_only_complete_days_are_fetched(venue, tmp_path):
    src = source(venue, tmp_path, today=dt.date(2021, 1, 10))
    report = src.sync(dt.date(2021, 1, 1), dt.date(2021, 12, 31))
    assert report.requested == (dt.date(2021, 1, 1), dt.date(2021, 1, 9))  # the 10th is still trading
    assert src.bars(["X:AAA"], dt.date(2021, 1, 1), dt.date(2021, 12, 31))["date"].max() == dt.date(2021, 1, 9)


def test_a_failed_symbol_is_logged_the_others_carry_on_and_the_next_sync_recovers(venue, tmp_path):
    src = source(venue, tmp_path)
    src.sync(dt.date(2021, 1, 1), dt.date(2021, 1, 31))
    venue.broken = {"X:BBB"}
    report = src.sync(dt.date(2021, 1, 1), dt.date(2021, 2, 28))
    assert report.counts()["failed"] == 1 and report.counts()["ok"] == 2
    assert "X:BBB" in report.failures() and "503" in report.failures()["X:BBB"]
    # its stored January is untouched, its cover did not grow
    assert src.bars(["X:BBB"], dt.date(2021, 1, 1), dt.date(2021, 3, 1))["date"].max() == dt.date(2021, 1, 31)
    assert src.cover()["X:BBB"] == (dt.date(2021, 1, 1), dt.date(2021, 1, 31), "failed")
    venue.broken = set()
    venue.requests.clear()
    again = src.sync(dt.date(2021, 1, 1), dt.date(2021, 2, 28))
    assert venue.requests == [("X:BBB", dt.date(2021, 1, 31), dt.date(2021, 2, 28))]  # only the one that failed
    row = again.log.filter(pl.col("symbol") == "X:BBB").row(0, named=True)
    assert row["status"] == "ok" and row["recovered"] is True and row["bars"] == 29
    # the whole story is one SQL query away
    log = Lakehouse(tmp_path).sql(
        "SELECT status, count(*) AS n FROM ingest_log WHERE symbol = 'X:BBB' GROUP BY status ORDER BY status"
    )
    assert dict(zip(log["status"], log["n"])) == {"failed": 1, "ok": 2}
    assert Lakehouse(tmp_path).sql("SELECT count(*) AS n FROM bars WHERE symbol = 'X:BBB'")["n"][0] == 59


def test_discovery_is_point_in_time_and_ranks_by_trailing_value_traded(venue, tmp_path):
    src = source(venue, tmp_path, top_n=2, adv_days=30)
    src.sync(dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    before = [c.symbol for c in src.discover(dt.date(2021, 1, 20))]
    assert before == ["X:AAA", "X:BBB"]  # CCC lists on 1 February: invisible before
    after = {c.symbol: c for c in src.discover(dt.date(2021, 3, 1))}
    assert sorted(after) == ["X:BBB", "X:CCC"]  # value traded 1000 x close and 100 x close beat 10 x close
    assert after["X:CCC"].first_date == dt.date(2021, 2, 1)
    assert after["X:CCC"].metadata["source"] == "venue"
    closes = src.closes(["X:AAA", "X:CCC"], dt.date(2021, 1, 30), dt.date(2021, 2, 2))
    assert closes.shape == (4, 2) and np.isnan(closes["X:CCC"].iloc[0]) and closes["X:AAA"].iloc[-1] == 132.0


def test_a_non_positive_close_is_refused_and_nothing_is_stored(venue, tmp_path):
    src = source(venue, tmp_path)
    venue.restated[("X:AAA", dt.date(2021, 1, 5))] = -1.0
    report = src.sync(dt.date(2021, 1, 1), dt.date(2021, 1, 31))
    assert "X:AAA on 2021-01-05" in report.failures()["X:AAA"]
    assert not (tmp_path / "bars" / "venue" / "X:AAA.parquet").exists()
    assert report.counts()["ok"] == 2
