"""Root metas only: drift from the last implemented weights to the target, as orders.

The implemented weights are yours: a CSV at `lakehouse/state/implemented_weights_<meta>_<risk>.csv`
(columns `as_of,symbol,weight`, signed net weights), shown in the graph as an external asset.
A partition D uses the latest `as_of <= D` (point in time); with none, it orders from cash and
says so. The asset never writes the state: `quant-assets accept META RISK DATE` records a target
as implemented. (An asset that initialised the state itself made partitions depend on the order
in which they were materialised.)
"""

import polars as pl
from dagster import AssetExecutionContext, AssetSpec, MetadataValue

from quant_assets.assets.common import (
    OWNER,
    GraphContext,
    LakehouseResource,
    Rows,
    Run,
    date_runs,
    flattened_name,
    implemented_name,
    orders_name,
    preview,
    table_metadata,
)
from quant_assets.execution.orders import order_rows, turnover_of
from quant_assets.execution.state import read_state, state_path


def orders_step(ctx: GraphContext, meta: str) -> list:
    """The external state assets of a root meta and one step writing every lens's orders."""
    cfg = ctx.manifest.metas[meta]
    lenses = ctx.manifest.meta_risks(meta)
    specs, states = [], []
    for risk in lenses:
        flattened_key, orders_key, state_key = (
            flattened_name(meta, risk),
            orders_name(meta, risk),
            implemented_name(meta, risk),
        )
        states.append(
            AssetSpec(
                state_key,
                group_name="execution",
                owners=[OWNER],
                kinds={"csv"},
                description=f"The weights of `{meta}` / `{risk}` you last implemented (you provide it): "
                f"lakehouse/state/{state_key}.csv with columns as_of,symbol,weight.",
            )
        )
        specs.append(
            AssetSpec(
                orders_key,
                metadata=table_metadata("rebalance_orders"),
                group_name="execution",
                kinds={"pandas", "parquet"},
                deps=[flattened_key, state_key],
                **ctx.spec_defaults,
                description=f"Orders taking `{meta}` / `{risk}` from the last implemented weights (as "
                f"of the rebalance date) to its flattened target: side-aware legs, drifts "
                f"below {cfg.min_trade:.0%} skipped as dust, required one-way turnover in "
                f"the metadata.",
            )
        )

    @ctx.step(f"orders_{meta}", specs)
    def orders(context: AssetExecutionContext, lakehouse: LakehouseResource):
        run = Run.of(context, ctx, lakehouse.get())
        for risk in lenses:
            flattened_key, orders_key = flattened_name(meta, risk), orders_name(meta, risk)
            if not run.is_selected(orders_key):
                continue
            path = state_path(run.lh, meta, risk)
            state = read_state(path)  # read once: the whole run sees one consistent state
            implemented = {d: dict(zip(g["symbol"], g["weight"].astype(float))) for d, g in state.groupby("as_of")}
            as_of_dates = sorted(implemented)
            flat, runs = date_runs(run.read("flattened_weights", flattened_key))
            symbols, net = flat["symbol"].to_list(), flat["net_weight"].to_list()
            targets = {d: dict(zip(symbols[a:b], net[a:b])) for d, a, b in runs}
            orders = Rows()
            status, per_date = {}, {}
            for d in run.dates:
                target = targets.get(d, {})
                known = [a for a in as_of_dates if a <= d]
                if not known:
                    as_of, current = None, {}
                    status[d] = (
                        f"no implemented weights as of {d}: orders from cash (record them with quant-assets accept)"
                    )
                else:
                    as_of = known[-1]
                    current = implemented[as_of]
                    status[d] = f"drift vs weights implemented on {as_of}"
                rows = order_rows(current, target, cfg.min_trade)
                per_date[d] = (
                    turnover_of(current, target),
                    sum(r["status"] == "EXECUTE" for r in rows),
                    sum(r["status"] == "SKIP" for r in rows),
                )
                for r in rows:
                    orders.add(**{k: [v] for k, v in r.items()}, implemented_as_of=[as_of], rebalance_date=[d])

            def last_date_orders(k: str, p: pl.DataFrame, per_date=per_date, status=status) -> dict:
                key_dates = [d for d in run.periods.dates(k) if d in per_date]
                if not key_dates:
                    return {}
                turnover, execute, dust = per_date[key_dates[-1]]
                return {
                    "preview": preview(p),
                    "status_last_date": status[key_dates[-1]],
                    "required_turnover_last_date": turnover,
                    "orders_to_execute_last_date": execute,
                    "dust_skipped_last_date": dust,
                }

            run.publish(
                "rebalance_orders",
                orders_key,
                orders.frame(implemented_as_of=pl.Date, rebalance_date=pl.Date),
                identity={"meta": meta, "risk": risk},
                per_partition=last_date_orders,
                metadata={"state_file": MetadataValue.path(str(path))},
            )
        yield from run.results()

    return [*states, orders]
