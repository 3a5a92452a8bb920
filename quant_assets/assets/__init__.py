"""Asset factories: the graph is generated from the manifest, one module per layer, one step per
group of keys that are always computed together (a subsettable multi-asset)."""

from __future__ import annotations

from quant_assets.assets.common import GraphContext
from quant_assets.assets.execution import orders_step
from quant_assets.assets.funnel import funnel_step
from quant_assets.assets.market_data import universe_step
from quant_assets.assets.meta import meta_step
from quant_assets.assets.sleeves import sleeve_step
from quant_assets.assets.tournament import tournament_asset


def build_assets(ctx: GraphContext) -> list:
    m = ctx.manifest
    out: list = [universe_step(ctx, u) for u in m.universes]
    for sleeve in m.sleeves:
        out += [funnel_step(ctx, sleeve), sleeve_step(ctx, sleeve)]
    out += [tournament_asset(ctx, sleeve) for sleeve in m.tournament_sleeves]
    for meta in m.metas_bottom_up:
        out.append(meta_step(ctx, meta))
    for root in m.roots:
        out += orders_step(ctx, root)
    return out
