"""Drift and orders with exact numbers, shorts included."""

import pandas as pd
import pytest

from quant_assets.execution.orders import rebalance_orders, required_turnover


def test_reference_example_only_material_drifts_execute():
    # last A .50 / B .50, target A .505 / B .45 / C .045, min trade 1% -> orders B and C only
    implemented = pd.Series({"A": 0.50, "B": 0.50})
    target = pd.Series({"A": 0.505, "B": 0.45, "C": 0.045})
    orders = rebalance_orders(implemented, target, min_trade=0.01)
    execute = orders[orders["status"] == "EXECUTE"].set_index("symbol")
    assert sorted(execute.index) == ["B", "C"]
    assert execute.loc["B", ["action", "size"]].tolist() == ["SELL", pytest.approx(0.05)]
    assert execute.loc["C", ["action", "size"]].tolist() == ["BUY", pytest.approx(0.045)]
    assert orders.set_index("symbol").loc["A", "status"] == "SKIP"  # 0.5% drift is dust
    assert required_turnover(implemented, target) == pytest.approx((0.005 + 0.05 + 0.045) / 2)


def test_shorts_keep_their_side():
    implemented = pd.Series({"S": -0.20, "T": -0.30, "U": 0.10, "V": -0.10})
    target = pd.Series({"S": -0.30, "T": -0.10, "U": -0.05, "V": 0.20})
    o = rebalance_orders(implemented, target, min_trade=0.01)
    legs = {(r.symbol, r.action): round(r.size, 12) for r in o.itertuples()}
    assert legs == {
        ("S", "SELL_SHORT"): 0.10,  # a bigger short is a sale, never a buy
        ("T", "BUY_TO_COVER"): 0.20,
        ("U", "SELL"): 0.10,
        ("U", "SELL_SHORT"): 0.05,  # long -> short: two legs
        ("V", "BUY_TO_COVER"): 0.10,
        ("V", "BUY"): 0.20,
    }  # short -> long: two legs
    assert o.set_index(["symbol", "action"]).loc[("S", "SELL_SHORT"), "drift"] == pytest.approx(-0.10)
    assert required_turnover(implemented, target) == pytest.approx((0.1 + 0.2 + 0.15 + 0.3) / 2)


def test_from_cash_and_no_drift():
    target = pd.Series({"A": 0.6, "B": -0.4})
    o = rebalance_orders(pd.Series(dtype=float), target)
    assert {(r.symbol, r.action, round(r.size, 12)) for r in o.itertuples()} == {
        ("A", "BUY", 0.6),
        ("B", "SELL_SHORT", 0.4),
    }
    assert rebalance_orders(target, target).empty
    assert required_turnover(target, target) == 0.0
