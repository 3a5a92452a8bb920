"""The step helpers every asset body shares: grouping stored rows by date without a frame per date."""

from __future__ import annotations

import datetime as dt

import polars as pl

from quant_assets.assets.common import date_runs

D1, D2, D3 = dt.date(2020, 1, 3), dt.date(2020, 1, 10), dt.date(2020, 1, 17)


def _groups(frame: pl.DataFrame) -> list[tuple[dt.date, list[str]]]:
    """What the steps looped over before: one frame per date, in order of first appearance."""
    return [
        (g["rebalance_date"][0], g["symbol"].to_list())
        for g in frame.partition_by("rebalance_date", maintain_order=True)
    ]


def test_runs_are_each_dates_rows_in_stored_order():
    frame = pl.DataFrame({"rebalance_date": [D1, D1, D2, D3, D3, D3], "symbol": ["A", "B", "C", "A", "B", "C"]})
    same, runs = date_runs(frame)
    assert same is frame
    assert runs == [(D1, 0, 2), (D2, 2, 3), (D3, 3, 6)]
    symbols = frame["symbol"].to_list()
    assert [(d, symbols[a:b]) for d, a, b in runs] == _groups(frame)


def test_a_date_split_across_the_frame_is_regrouped_in_first_appearance_order():
    frame = pl.DataFrame({"rebalance_date": [D2, D1, D2, D1, D3], "symbol": ["C", "A", "D", "B", "E"]})
    regrouped, runs = date_runs(frame)
    symbols = regrouped["symbol"].to_list()
    assert (
        [(d, symbols[a:b]) for d, a, b in runs]
        == _groups(frame)
        == [
            (D2, ["C", "D"]),
            (D1, ["A", "B"]),
            (D3, ["E"]),
        ]
    )


def test_no_rows_no_runs():
    empty = pl.DataFrame(schema={"rebalance_date": pl.Date, "symbol": pl.Utf8})
    assert date_runs(empty)[1] == []


def test_missing_dates_are_one_group_as_partition_by_makes_them():
    frame = pl.DataFrame({"rebalance_date": [None, None, D1, None], "symbol": ["A", "B", "C", "D"]})
    regrouped, runs = date_runs(frame)
    symbols = regrouped["symbol"].to_list()
    assert [(d, symbols[a:b]) for d, a, b in runs] == _groups(frame) == [(None, ["A", "B", "D"]), (D1, ["C"])]


def test_candidate_sets_split_members_and_benchmarks_per_date_sorted():
    from quant_assets.assets.market_data import candidate_sets

    cands = pl.DataFrame(
        {
            "rebalance_date": [D1, D1, D1, D2, D2, D1],
            "symbol": ["B", "SPY", "A", "C", "X", "N"],
            "is_benchmark": [False, True, False, False, None, False],
        }
    )
    assert candidate_sets(cands) == {D1: (["A", "B", "N"], ["SPY"]), D2: (["C"], [])}  # no flag: neither
