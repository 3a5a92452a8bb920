"""Your own data from a folder: both layouts, point-in-time listing, every malformed input named
(file, row or date, column), and the files manifest materialised through Dagster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quant_assets.data.files import FilesSource, write_example_folder
from quant_assets.data.validation import DataError

GOOD = "date,open,high,low,close,volume\n2020-01-02,10,11,9,10.5,1000\n2020-01-03,10.5,11,10,10.8,1200\n"


def files_manifest(tmp_path: Path, years: tuple[int, int], tickers: int, start: str, end: str):
    """The shipped files.yaml pointed at an example folder cut from the bundled data: (manifest, folder)."""
    import yaml

    from quant_assets.config.manifest import default_manifest_path, load_manifest

    data = write_example_folder(tmp_path / "files", years=years, tickers=tickers)
    spec = yaml.safe_load((default_manifest_path().parent / "files.yaml").read_text())
    spec["sources"]["my_folder"]["path"] = str(data)
    spec["calendar"].update(start=start, end=end)
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(spec))
    return load_manifest(tmp_path / "files.yaml"), data


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_per_symbol_files_with_metadata(tmp_path):
    folder(
        tmp_path,
        {
            "AAA.csv": GOOD,
            "BBB.csv": "date,close\n2020-01-03,20\n2020-01-06,21\n",
            "symbols.csv": "ticker,exchange,asset_type,sector\nAAA,XNYS,equity,Energy\n",
        },
    )
    src = FilesSource("mine", tmp_path, exchange="FILE")
    listed = {c.symbol: c for c in src.discover(dt.date(2020, 1, 2))}
    assert list(listed) == ["XNYS:AAA"]  # BBB starts on the 3rd: not listed yet (point in time)
    assert listed["XNYS:AAA"].sector == "Energy" and listed["XNYS:AAA"].metadata == {"source": "mine"}
    assert {c.symbol for c in src.discover(dt.date(2020, 1, 6))} == {"XNYS:AAA", "FILE:BBB"}
    closes = src.closes(["XNYS:AAA", "FILE:BBB"], dt.date(2020, 1, 1), dt.date(2020, 1, 31))
    assert closes["XNYS:AAA"].tolist()[:2] == [10.5, 10.8]
    assert np.isnan(closes["FILE:BBB"].iloc[0]) and closes["FILE:BBB"].iloc[-1] == 21.0
    assert src.load().ohlcv["XNYS:AAA"]["volume"].to_list() == [1000.0, 1200.0]  # OHLCV kept


def test_one_long_table(tmp_path):
    frame = pl.DataFrame(
        {
            "date": [dt.date(2020, 1, 2), dt.date(2020, 1, 3), dt.date(2020, 1, 2)],
            "symbol": ["X:AAA", "X:AAA", "BBB"],
            "close": [1.0, 1.1, 5.0],
        }
    )
    frame.write_parquet(tmp_path / "prices.parquet")
    src = FilesSource("long", tmp_path, exchange="EXCH")
    assert sorted(c.symbol for c in src.discover(dt.date(2020, 1, 2))) == ["EXCH:BBB", "X:AAA"]


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "A.csv",
            "date,close\n2020-01-02,1\n02/01/2020,2\n",
            r"A\.csv: row 2, column date: '02/01/2020' is not a date",
        ),
        (
            "A.csv",
            "date,close\n2020-01-02,1\n2020-01-03,-2\n",
            r"A\.csv: row 2 \(2020-01-03\), column close: -2\.0 .*positive",
        ),
        (
            "A.csv",
            "date,close\n2020-01-02,1\n2020-01-03,\n",
            r"A\.csv: row 2 \(2020-01-03\), column close: missing close",
        ),
        ("A.csv", "date,close\n2020-01-02,1\n2020-01-03,abc\n", r"A\.csv: row 2 \(2020-01-03\), column close: 'abc'"),
        ("A.csv", "date,close\n2020-01-02,1\n2020-01-02,2\n", r"A\.csv: row 2, column date: 2020-01-02 appears more"),
        ("A.csv", "date,close\n2020-01-03,1\n2020-01-02,2\n", r"A\.csv: row 2, column date: 2020-01-02 comes after"),
        ("A.csv", "day,close\n2020-01-02,1\n", r"A\.csv: no `date` column"),
        ("A.csv", "date,open\n2020-01-02,1\n", r"A\.csv: no `close` column"),
        ("A.parquet", "not parquet at all", r"A\.parquet: cannot be read as parquet"),
        ("A_B|x.csv", GOOD, r"symbol 'FILE:A_B\|x' refused"),
        ("..hidden.csv", GOOD, r"symbol 'FILE:\.\.hidden' refused"),
    ],
)
def test_every_malformed_input_is_named(tmp_path, name, text, message):
    folder(tmp_path, {name: text})
    with pytest.raises(DataError, match=message):
        FilesSource("mine", tmp_path).discover(dt.date(2020, 6, 1))


def test_a_missing_folder_and_an_empty_one_are_named(tmp_path):
    with pytest.raises(DataError, match=r"folder .*nowhere does not exist"):
        FilesSource("mine", tmp_path / "nowhere").discover(dt.date(2020, 1, 1))
    with pytest.raises(DataError, match="no .csv or .parquet files"):
        FilesSource("mine", tmp_path).discover(dt.date(2020, 1, 1))


def test_a_fixed_file_is_read_again(tmp_path):
    folder(tmp_path, {"A.csv": "date,close\n2020-01-02,1\n2020-01-03,-2\n"})
    src = FilesSource("mine", tmp_path)
    with pytest.raises(DataError):
        src.discover(dt.date(2020, 6, 1))
    (tmp_path / "A.csv").write_text("date,close\n2020-01-02,1\n2020-01-03,2.5\n")
    assert [c.symbol for c in src.discover(dt.date(2020, 6, 1))] == ["FILE:A"]


@pytest.mark.slow
def test_the_files_manifest_materialises_through_dagster(tmp_path):
    """The shipped files.yaml on a folder written from the bundled data, two years, in process:
    every check passes, weights are physical symbols of the folder and sum as they should."""
    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.data.calendars import rebalance_dates
    from quant_assets.definitions import build_definitions
    from quant_assets.storage.lakehouse import Lakehouse

    manifest, _ = files_manifest(tmp_path, (2016, 2019), 8, "2017-01-06", "2019-01-01")
    defs = build_definitions(manifest, str(tmp_path / "lh"))
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    result = materialize_range(
        defs, manifest, dt.date(2017, 1, 1), dt.date(2018, 12, 31), ephemeral_instance(), run_config=quiet
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    lh = Lakehouse(tmp_path / "lh")
    symbols = set(lh.sql("SELECT DISTINCT symbol FROM candidates")["symbol"])
    assert len(symbols) == 8 and all(s.split(":")[0] in ("NYSE", "NASDAQ") for s in symbols)
    sums = lh.sql("SELECT rebalance_date, risk, sum(weight) AS s FROM meta_weights WHERE meta = 'my_book' GROUP BY ALL")
    dates = rebalance_dates(manifest.calendar, dt.date(2018, 12, 31))
    assert sums.height == 3 * len(dates) == 3 * 103  # every rebalance date x 3 lenses (the last Friday's
    # holding period would end after the calendar's end, 2019-01-01: not a rebalance date)
    np.testing.assert_allclose(sums["s"].to_numpy(), 1.0, atol=1e-9)
    flat = lh.sql("SELECT DISTINCT symbol FROM flattened_weights WHERE meta = 'my_book'")["symbol"]
    assert set(flat) <= symbols


def test_a_long_table_names_the_row_of_the_file(tmp_path):
    """Rows used to be counted within each symbol's group."""
    folder(tmp_path, {"prices.csv": "date,symbol,close\n2020-01-02,AAA,1\n2020-01-02,BBB,2\n2020-01-03,AAA,-1\n"})
    with pytest.raises(DataError, match=r"prices\.csv: row 3 \(2020-01-03\), column close"):
        FilesSource("long", tmp_path).discover(dt.date(2020, 6, 1))


def test_parquet_timestamps_header_only_files_and_one_symbol_twice(tmp_path):
    import datetime as _dt

    pl.DataFrame({"date": [_dt.datetime(2020, 1, 2), _dt.datetime(2020, 1, 3)], "close": [1.0, 1.1]}).write_parquet(
        tmp_path / "AAA.parquet"
    )
    assert [c.symbol for c in FilesSource("mine", tmp_path).discover(dt.date(2020, 6, 1))] == ["FILE:AAA"]
    (tmp_path / "BBB.csv").write_text("date,close\n")
    with pytest.raises(DataError, match=r"BBB\.csv: no rows for FILE:BBB"):
        FilesSource("mine", tmp_path).discover(dt.date(2020, 6, 1))
    (tmp_path / "BBB.csv").unlink()
    (tmp_path / "AAA.csv").write_text(GOOD)
    with pytest.raises(DataError, match=r"AAA is also read from .*AAA\.(csv|parquet); keep one file per symbol"):
        FilesSource("mine", tmp_path).discover(dt.date(2020, 6, 1))


@pytest.mark.slow
def test_the_market_data_step_checks_the_folder_against_the_exchange_calendar(tmp_path):
    """A bar on an NYSE holiday stops the step with the symbol and the date, storing nothing; a
    session missing from every file is stored as missing returns (a gap), not bridged."""
    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.definitions import build_definitions
    from quant_assets.storage.lakehouse import Lakehouse

    manifest, data = files_manifest(tmp_path, (2016, 2018), 3, "2017-01-06", "2018-01-01")
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    first = sorted(data.glob("*.csv"))[0]
    clean = first.read_text()

    def run(lh: str):
        defs = build_definitions(manifest, str(tmp_path / lh))
        return materialize_range(
            defs,
            manifest,
            dt.date(2017, 1, 1),
            dt.date(2017, 12, 31),
            ephemeral_instance(),
            selection="group:market_data",
            raise_on_error=False,
            run_config=quiet,
        )

    # Independence Day 2017 (a Tuesday): a vendor that pads the calendar
    frame = pl.read_csv(first, try_parse_dates=True)
    padded = pl.concat([frame, pl.DataFrame({"date": [dt.date(2017, 7, 4)], "close": [99.0]})]).sort("date")
    padded.write_csv(first)
    result = run("lh_padded")
    assert not result.success
    errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    text = " ".join(str(e.cause or e) for e in errors) + " ".join(e.message for e in errors)
    assert f"{first.stem}" in text and "2017-07-04, a holiday or closure, which is not a session of the XNYS" in text
    assert "universe 'my_stocks' (calendar XNYS): source 'my_folder'" in text
    assert Lakehouse(tmp_path / "lh_padded").partitions("prices", "prices_my_stocks") == []

    # 2017-03-15 removed from every file: the session is still a row, with missing returns
    first.write_text(clean)
    for f in data.glob("*.csv"):
        if f.name != "symbols.csv":
            pl.read_csv(f, try_parse_dates=True).filter(pl.col("date") != dt.date(2017, 3, 15)).write_csv(f)
    assert run("lh_gap").success
    returns = Lakehouse(tmp_path / "lh_gap").sql(
        "SELECT date, count(*) AS n, count(ret) AS with_return FROM returns "
        "WHERE date BETWEEN '2017-03-14' AND '2017-03-16' GROUP BY date ORDER BY date"
    )
    assert returns.rows() == [(dt.date(2017, 3, 14), 3, 3), (dt.date(2017, 3, 15), 3, 0), (dt.date(2017, 3, 16), 3, 0)]
