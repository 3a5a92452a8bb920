"""Each partition file's footer: content hashes of its rows by date, written with the rows."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from quant_assets.data.hashing import prefix_hashes
from quant_assets.storage.lakehouse import Lakehouse

D1, D2, D3 = dt.date(2020, 1, 3), dt.date(2020, 1, 10), dt.date(2020, 1, 17)


def _rows(dates, values) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": dates, "universe": ["u"] * len(dates), "symbol": ["A"] * len(dates), "close": values},
        schema_overrides={"date": pl.Date},
    )


def test_the_prefix_up_to_a_date_ignores_rows_after_it_and_sees_every_row_up_to_it():
    days, prefixes, total = prefix_hashes(_rows([D1, D2, D2], [1.0, 2.0, 3.0]), "date")
    assert days == [D1, D2] and total == prefixes[-1]
    later = prefix_hashes(_rows([D1, D2, D2, D3], [1.0, 2.0, 3.0, 4.0]), "date")
    assert later[1][:2] == prefixes and later[2] != total  # a date appended: the earlier prefixes stay
    changed = prefix_hashes(_rows([D1, D2, D2], [1.0, 2.0, 3.5]), "date")
    assert changed[1][0] == prefixes[0] and changed[1][1] != prefixes[1]
    swapped = prefix_hashes(_rows([D1, D2, D2], [1.0, 3.0, 2.0]), "date")
    assert swapped[1][1] != prefixes[1]  # the rows' order within a date counts
    shuffled = prefix_hashes(_rows([D2, D1, D2], [2.0, 1.0, 3.0]), "date")
    assert shuffled[1] == prefixes  # hashed in date order (stable): a file's row order by date does not
    assert prefix_hashes(_rows([], []), "date") == ([], [], 0)


def test_a_partition_file_carries_its_footer_and_a_missing_one_has_none(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_partition("prices", "prices_u", "2020", _rows([D1, D3], [1.0, 2.0]), inputs={D1: "x"})
    footer = lh.footer("prices", "prices_u", "2020")
    assert footer is not None and footer.known
    assert footer.inputs == {"2020-01-03": "x"}
    assert footer.upto(D1) == footer.upto(D2) != footer.upto(D3) == footer.upto(None) == footer.total
    assert footer.upto(dt.date(2019, 12, 31)) == 0
    assert lh.footer("prices", "prices_u", "2021") is None
    assert lh.tables_of("prices_u") == ["prices"]


def test_a_file_written_before_footers_is_known_to_be_unknown(tmp_path):
    lh = Lakehouse(tmp_path)
    path = lh.path("prices", "prices_u", "2020")
    path.parent.mkdir(parents=True)
    lh.conform("prices", _rows([D1], [1.0])).write_parquet(path)
    footer = lh.footer("prices", "prices_u", "2020")
    assert footer is not None and not footer.known and footer.inputs is None


def test_a_garbled_file_names_itself(tmp_path):
    lh = Lakehouse(tmp_path)
    path = lh.path("prices", "prices_u", "2020")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    with pytest.raises(Exception, match="corrupt lakehouse file .*prices_u.*2020"):
        lh.footer("prices", "prices_u", "2020")


def test_a_table_without_dates_counts_every_row_for_every_date(tmp_path):
    from quant_assets.storage.lakehouse import Footer

    undated = Footer((), (), 12345, None, dated=False)
    assert undated.upto(D1) == undated.upto(None) == 12345
