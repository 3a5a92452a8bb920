"""The generated asset graph: loadable, snapshot-stable, every asset carrying the global policies.

A change to the manifest or the factories that changes the graph shows up as a snapshot diff in
review. Refresh deliberately with: UPDATE_SNAPSHOTS=1 make test
"""

import os
from pathlib import Path

import dagster as dg

from quant_assets.config.manifest import load_manifest
from quant_assets.definitions import build_definitions, defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "default_graph.txt"


def describe_graph(d: dg.Definitions) -> str:
    graph = d.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        deps = []
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            mapping = graph.get_partition_mapping(key, parent)
            shown = ""
            if isinstance(mapping, dg.TimeWindowPartitionMapping) and (mapping.start_offset or mapping.end_offset):
                shown = f"[{mapping.start_offset}..{mapping.end_offset}]"
            deps.append(parent.to_user_string() + shown)
        checks = sorted(c.name for c in node.check_keys)
        step = d.get_assets_def(key).node_def.name if node.is_materializable else "external"
        lines.append(
            f"{key.to_user_string()} ({node.group_name}, step {step})"
            + (f" checks={checks}" if checks else "")
            + (" <- " + ", ".join(deps) if deps else "")
        )
    return "\n".join(lines) + "\n"


def test_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)


def test_graph_snapshot():
    actual = describe_graph(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(actual)
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: create it with UPDATE_SNAPSHOTS=1 make test"
    assert actual == SNAPSHOT.read_text(), "graph changed: review, then UPDATE_SNAPSHOTS=1 make test"


def test_nested_meta_becomes_asset_dependencies():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("meta_returns_total_portfolio_hrp")).parent_keys}
    assert parents == {"meta_portfolio_returns_us_stocks_hrp", "sleeve_returns_factor_rotation_hrp"}
    flat = {k.to_user_string() for k in graph.get(dg.AssetKey("flattened_weights_total_portfolio_hrp")).parent_keys}
    assert {
        "flattened_weights_us_stocks_hrp",
        "sleeve_weights_factor_rotation_hrp",
        "candidates_us_large_caps",
        "candidates_us_factor_etfs",
    } <= flat


def test_every_asset_has_the_global_policies():
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
    external = [k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).is_materializable]
    assert len(keys) == 135  # the tournament is opt-in (tournament.sleeves)
    assert sorted(external) == [
        f"implemented_weights_total_portfolio_{r}"
        for r in ("barbell", "equal_weight", "hrp", "max_sharpe", "min_variance")
    ]
    groups = set()
    for key in keys:
        node = graph.get(key)
        groups.add(node.group_name)
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
        assert node.freshness_policy is not None, key
        assert node.description, key
        assert node.owners == ["team:quant-research"], key
        assert node.partitions_def is not None and not isinstance(node.partitions_def, dg.MultiPartitionsDefinition), (
            key
        )
    assert groups == {"market_data", "selection", "sleeves", "meta", "reports", "execution"}
    assert graph.get(keys[0]).partitions_def.get_partition_keys() == [str(y) for y in range(1992, 2023)]


def test_manifest_changes_change_the_graph():
    m = load_manifest()
    data = m.model_dump(mode="json")
    data["sleeves"]["trend_short"]["risk_profiles"] = ["hrp"]
    from quant_assets.config.manifest import parse_manifest

    small = build_definitions(parse_manifest(data), lakehouse_root="/tmp/unused")
    names = {k.to_user_string() for k in small.resolve_asset_graph().get_all_asset_keys()}
    assert "meta_weights_us_stocks_hrp" in names and "meta_weights_us_stocks_min_variance" not in names
    assert "sleeve_weights_trend_long_min_variance" in names  # the other sleeves keep their profiles


def test_the_backfill_profile_counts_every_step_body():
    """`benchmarks.backfill --profile` reports the Dagster share as the time outside the step
    functions it names: a renamed step function would silently count as Dagster's (the metas'
    did, for a while)."""
    from benchmarks.backfill import STEP_BODIES

    bodies = {
        a.op.compute_fn.decorated_fn.__name__
        for a in defs.resolve_asset_graph().assets_defs
        if a.is_executable and a.node_def is not None
    }
    assert bodies == {"universe_data", "funnel", "sleeve_lenses", "meta_lenses", "orders"}
    assert bodies <= set(STEP_BODIES)
