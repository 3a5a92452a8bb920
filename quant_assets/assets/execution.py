"""Root metas only: drift from the last implemented weights to the target, as orders.

The implemented weights are yours: a CSV at `lakehouse/state/implemented_<meta>_<risk>.csv`
(columns `as_of,symbol,weight`, signed net weights), shown in the graph as an external asset.
A partition D uses the latest `as_of <= D` (point in time); with none, it orders from cash and
says so. The asset never writes the state: `quant-assets accept META RISK DATE` records a target
as implemented. (An asset that initialised the state itself made partitions depend on the order
in which they were materialised.)
"""

import datetime as dt
import fcntl
import os
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, asset

from quant_assets.assets.common import (
    OWNER,
    SINGLE_RUN,
    GraphContext,
    flattened_name,
    implemented_name,
    orders_name,
    require,
    run_dates,
    table_metadata,
    with_keys,
)
from quant_assets.lakehouse import Lakehouse, LakehouseResource
from quant_assets.orders import rebalance_orders, required_turnover


def state_path(lh: Lakehouse, meta: str, risk: str) -> Path:
    return lh.root / "state" / f"{implemented_name(meta, risk)}.csv"


def read_state(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["as_of", "symbol", "weight"])
    state = pd.read_csv(path)
    missing = {"as_of", "symbol", "weight"} - set(state.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (expected as_of,symbol,weight)")
    state["as_of"] = pd.to_datetime(state["as_of"]).dt.date
    return state


def record_implemented(path: Path, date: dt.date, weights: pd.Series) -> None:
    """Record `weights` as implemented on `date` (replacing an earlier record for that date).

    Read-modify-write under an exclusive lock, written to a temp file and swapped in atomically,
    so concurrent writers lose nothing and readers never see a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(path)
        state = state[state["as_of"] != date]
        new = pd.DataFrame({"as_of": date, "symbol": weights.index, "weight": weights.to_numpy()})
        out = pd.concat([state, new], ignore_index=True) if len(state) else new
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        out.sort_values(["as_of", "symbol"]).to_csv(tmp, index=False)
        os.replace(tmp, path)


def execution_assets(ctx: GraphContext, meta: str, risk: str) -> list:
    cfg = ctx.manifest.metas[meta]
    n_flat, n_orders, n_state = flattened_name(meta, risk), orders_name(meta, risk), implemented_name(meta, risk)
    state_spec = AssetSpec(n_state, group_name="execution", owners=[OWNER], kinds={"csv"},
                           description=f"The weights of `{meta}` / `{risk}` you last implemented (you provide it): "
                                       f"lakehouse/state/{n_state}.csv with columns as_of,symbol,weight.")

    @asset(name=n_orders, group_name="execution", kinds={"pandas", "parquet"}, deps=[n_flat, n_state],
           partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER],
           description=f"Orders taking `{meta}` / `{risk}` from the last implemented weights (as of the rebalance "
                       f"date) to its flattened target: side-aware legs, drifts below {cfg.min_trade:.0%} skipped "
                       f"as dust, required one-way turnover in the metadata.")
    def orders(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        path = state_path(lh, meta, risk)
        state = read_state(path)  # read once: the whole run sees one consistent state
        rows, last, turnover, status = 0, None, 0.0, ""
        for d in dates:
            flat = require(lh.read_partition("flattened_weights", n_flat, d), n_flat, d).to_pandas()
            target = pd.Series(flat["net_weight"].to_numpy(), index=flat["symbol"].to_numpy())
            known = state[state["as_of"] <= d]
            if known.empty:
                as_of, current = None, pd.Series(dtype=float)
                status = f"no implemented weights as of {d}: orders from cash (record them with quant-assets accept)"
            else:
                as_of = max(known["as_of"])
                current = known[known["as_of"] == as_of].set_index("symbol")["weight"]
                status = f"drift vs weights implemented on {as_of}"
            frame = rebalance_orders(current, target, cfg.min_trade)
            turnover = required_turnover(current, target)
            frame["implemented_as_of"] = as_of
            last = with_keys(frame, d, meta=meta, risk=risk)
            lh.write_partition("rebalance_orders", n_orders, d, last)
            rows += len(last)
        execute = last[last["status"] == "EXECUTE"] if len(last) else last
        return MaterializeResult(metadata=table_metadata(
            lh, "rebalance_orders", n_orders, dates, rows, last, status_last_date=status,
            required_turnover_last_date=turnover, orders_to_execute_last_date=len(execute),
            dust_skipped_last_date=int((last["status"] == "SKIP").sum()) if len(last) else 0,
            state_file=MetadataValue.path(str(path))))

    return [state_spec, orders]
