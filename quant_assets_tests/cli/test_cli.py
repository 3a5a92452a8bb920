"""The command line under bad input: one line naming the culprit on stderr, exit code 2, no traceback."""

import datetime as dt

import pytest

from quant_assets.cli.main import main
from quant_assets.storage.lakehouse import Lakehouse


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANT_ASSETS_LAKEHOUSE", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize("selection", ["key:(((", "group:", "foo bar baz", "key:no_such_asset"])
def test_a_malformed_selection_is_one_line_before_anything_runs(empty_home, capsys, selection):
    code = main(["backfill", "--start", "2020-01-01", "--end", "2020-12-31", "--select", selection])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and selection in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (empty_home / "lakehouse").exists()  # nothing was materialised


def test_sql_refuses_writes_with_one_line(empty_home, capsys):
    Lakehouse(empty_home / "lakehouse").root.mkdir(parents=True)
    code = main(["sql", f"COPY (SELECT 1) TO '{empty_home / 'x.csv'}'"])
    err = capsys.readouterr().err
    assert code == 2 and "read-only: COPY refused" in err
    assert not (empty_home / "x.csv").exists()


def test_summary_names_an_unknown_lens(empty_home, capsys):
    code = main(["summary", "--date", str(dt.date(2020, 1, 3)), "--risk", "x' OR '1'='1"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown risk lens" in err and "its lenses" in err


def test_a_corrupt_partition_is_one_line_naming_the_file_and_partition(empty_home, capsys):
    import polars as pl

    lh = Lakehouse(empty_home / "lakehouse")
    frame = pl.DataFrame({"universe": ["u"], "date": [dt.date(2020, 1, 3)], "symbol": ["S"], "close": [1.0]})
    lh.write_partition("prices", "prices_u", "2020", frame)
    lh.path("prices", "prices_u", "2020").write_bytes(b"PAR1 garbage")
    code = main(["sql", "SELECT count(*) FROM prices"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "corrupt file" in err and "prices_u/2020.parquet" in err and "partition 2020" in err
