"""Asset factories: the graph is generated from the manifest, one module per layer."""

from __future__ import annotations

from quant_assets.assets.common import GraphContext
from quant_assets.assets.execution import execution_assets
from quant_assets.assets.market_data import universe_assets
from quant_assets.assets.meta import meta_assets
from quant_assets.assets.sleeves import sleeve_assets
from quant_assets.assets.tournament import tournament_asset


def build_assets(ctx: GraphContext) -> list:
    m = ctx.manifest
    out: list = []
    for universe in m.universes:
        out += universe_assets(ctx, universe)
    for sleeve in m.sleeves:
        out += sleeve_assets(ctx, sleeve)
    for sleeve in m.tournament_sleeves:
        out.append(tournament_asset(ctx, sleeve))
    for meta in m.metas_bottom_up:
        for risk in m.meta_risks(meta):
            out += meta_assets(ctx, meta, risk)
    for root in m.roots:
        for risk in m.meta_risks(root):
            out += execution_assets(ctx, root, risk)
    return out
