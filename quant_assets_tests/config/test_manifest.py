"""Manifest validation: every error names the field and value, before Dagster sees a graph."""

import copy

import pytest
import yaml

from quant_assets.config.manifest import ManifestError, default_manifest_path, load_manifest, parse_manifest


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load(default_manifest_path().read_text())


def with_metas(base: dict, metas: dict, **top) -> dict:
    data = copy.deepcopy(base)
    data["metas"] = metas
    data.update(top)
    return data


def test_default_manifest_exercises_the_fractal():
    m = load_manifest()
    assert m.roots == ["total_portfolio"]
    assert m.metas_bottom_up == ["us_stocks", "total_portfolio"]
    assert [str(c) for c in m.metas["total_portfolio"].children] == ["meta:us_stocks", "sleeve:factor_rotation"]
    assert {s.direction for s in m.sleeves.values()} == {"long", "short"}
    assert m.meta_risks("total_portfolio") == ["equal_weight", "min_variance", "hrp", "max_sharpe", "barbell"]
    assert m.descendant_sleeves("total_portfolio") == ["factor_rotation", "reversion_long", "trend_long", "trend_short"]


def test_cycle_is_reported_as_a_path(base):
    metas = {
        "meta_a": {"children": ["meta:meta_b", "sleeve:trend_long"]},
        "meta_b": {"children": ["meta:meta_a"]},
    }
    with pytest.raises(ManifestError, match=r"meta cycle: meta_a -> meta_b -> meta_a"):
        parse_manifest(with_metas(base, metas))


def test_self_cycle(base):
    with pytest.raises(ManifestError, match=r"meta cycle: loop -> loop"):
        parse_manifest(with_metas(base, {"loop": {"children": ["meta:loop"]}}))


def test_unknown_child_names_meta_and_child(base):
    with pytest.raises(ManifestError, match=r"metas\.m\.children: unknown sleeve 'nope'"):
        parse_manifest(with_metas(base, {"m": {"children": ["sleeve:trend_long", "sleeve:nope"]}}))


def test_depth_limit_names_the_path(base):
    metas = {
        "d1": {"children": ["meta:d2"]},
        "d2": {"children": ["meta:d3"]},
        "d3": {"children": ["sleeve:trend_long"]},
    }
    parse_manifest(with_metas(base, metas, max_meta_depth=3))  # exactly at the limit: fine
    with pytest.raises(ManifestError, match=r"depth 3 exceeds max_meta_depth 2: d1 -> d2 -> d3"):
        parse_manifest(with_metas(base, metas, max_meta_depth=2))


@pytest.mark.parametrize(
    "lo, hi, message",
    [
        (0.4, 0.6, r"3 children x min_weight 0.4 > 1"),
        (0.0, 0.3, r"3 children x max_weight 0.3 < 1"),
        (0.5, 0.4, r"min_weight \(0.5\) exceeds max_weight \(0.4\)"),
    ],
)
def test_infeasible_bounds_fail_at_load(base, lo, hi, message):
    meta = {
        "children": ["sleeve:trend_long", "sleeve:reversion_long", "sleeve:trend_short"],
        "min_weight": lo,
        "max_weight": hi,
    }
    with pytest.raises(ManifestError, match=message):
        parse_manifest(with_metas(base, {"m": meta}))


def test_field_errors_name_field_and_value(base):
    data = copy.deepcopy(base)
    data["sleeves"]["trend_long"]["risk_profiles"] = ["hrp", "kelly"]
    with pytest.raises(ManifestError, match=r"sleeves\.trend_long\.risk_profiles: .*unknown risk profile 'kelly'"):
        parse_manifest(data)
    data = copy.deepcopy(base)
    data["sleeves"]["trend_long"]["direction"] = "sideways"
    with pytest.raises(ManifestError, match=r"sleeves\.trend_long\.direction: .*'sideways'"):
        parse_manifest(data)
    data = copy.deepcopy(base)
    data["universes"]["us_large_caps"]["source"] = "bloomberg"
    with pytest.raises(ManifestError, match=r"universes\.us_large_caps\.source: unknown source 'bloomberg'"):
        parse_manifest(data)
    data = copy.deepcopy(base)
    data["sleeves"]["trend_long"]["universe"] = "mars"
    with pytest.raises(ManifestError, match=r"sleeves\.trend_long\.universe: unknown universe 'mars'"):
        parse_manifest(data)


def test_risk_lens_must_exist_in_every_descendant(base):
    data = copy.deepcopy(base)
    data["sleeves"]["trend_short"]["risk_profiles"] = ["hrp"]
    m = parse_manifest(data)
    assert m.meta_risks("us_stocks") == ["hrp"]  # default lens = the shared profiles
    data["metas"]["us_stocks"]["risk_profiles"] = ["hrp", "max_sharpe"]
    with pytest.raises(ManifestError, match=r"metas\.us_stocks\.risk_profiles: \['max_sharpe'\] not built"):
        parse_manifest(data)


def test_unknown_keys_are_rejected(base):
    data = copy.deepcopy(base)
    data["sleeves"]["trend_long"]["lookbak"] = 3
    with pytest.raises(ManifestError, match=r"sleeves\.trend_long\.lookbak: Extra inputs are not permitted"):
        parse_manifest(data)


def test_env_var_and_missing_file(tmp_path, monkeypatch, base):
    path = tmp_path / "m.yaml"
    data = copy.deepcopy(base)
    data["metas"]["total_portfolio"]["max_weight"] = 0.75
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("QUANT_ASSETS_MANIFEST", str(path))
    assert load_manifest().metas["total_portfolio"].max_weight == 0.75
    with pytest.raises(ManifestError, match="manifest file not found: .*absent.yaml"):
        load_manifest(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sleeves: [unclosed")
    with pytest.raises(ManifestError, match="bad.yaml is not valid YAML"):
        load_manifest(bad)


def test_meta_allocation_engine_is_validated_at_load(base):
    data = copy.deepcopy(base)
    data["metas"]["us_stocks"]["allocation"]["engine"] = "cvxportfolio"
    with pytest.raises(ManifestError, match=r"metas\.us_stocks\.allocation\.engine: unknown engine 'cvxportfolio'"):
        parse_manifest(data)


def test_market_profile_needs_benchmarks():
    data = load_manifest().model_dump(mode="json")
    data["universes"]["us_large_caps"]["benchmarks"] = []
    data["sleeves"]["trend_long"]["risk_profiles"] = ["hrp", "market"]
    with pytest.raises(ManifestError, match=r"`market` holds the universe's benchmarks"):
        parse_manifest(data)


# ---- broken manifests: an error naming the field, never a traceback ---------------------------


def test_an_absurd_lookback_is_refused_at_load(base):
    """10^9 days used to load and overflow a date window at run time without naming the field."""
    data = copy.deepcopy(base)
    data.setdefault("lookbacks", {})["prices_days"] = 10**9
    with pytest.raises(ManifestError, match=r"lookbacks\.prices_days: Input should be less than or equal to 10080"):
        parse_manifest(data)


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    text = default_manifest_path().read_text()
    path.write_text(
        text + "\nlookbacks:\n  prices_days: 400\n" if "\nlookbacks:" in text else text + "\ncalendar: {}\n"
    )
    with pytest.raises(
        ManifestError, match=r"dup\.yaml is not valid YAML: duplicate key '(lookbacks|calendar)' \(first at line \d+\)"
    ):
        load_manifest(path)


def test_children_as_a_string_says_it_must_be_a_list(base):
    data = copy.deepcopy(base)
    data["metas"]["us_stocks"]["children"] = "sleeve:trend_long"
    with pytest.raises(
        ManifestError, match=r"metas\.us_stocks\.children: must be a list of children, e\.g\. \[sleeve:trend_long\]"
    ):
        parse_manifest(data)


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list) and node and not isinstance(node[0], (dict, list)):
        yield path
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _set(data, path, value):
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


GARBAGE = ["x", -1, None, [], {"a": 1}, 10**9, 1e308]


def test_every_broken_field_is_a_manifest_error_naming_it(base):
    """A table of broken manifests: every leaf of the default one replaced by garbage of each kind.
    Each either loads (the garbage happens to be valid there) or fails with ManifestError whose
    message names the field's path; no other exception escapes."""
    failures, named = [], 0
    for path in _leaves(base):
        for value in GARBAGE:
            data = copy.deepcopy(base)
            _set(data, path, value)
            try:
                parse_manifest(data)
            except ManifestError as err:
                named += 1
                dotted = ".".join(str(p) for p in path[:2])
                if dotted not in str(err):
                    failures.append((path, value, str(err).splitlines()[:3]))
            except Exception as err:  # a traceback a user would see
                failures.append((path, value, f"{type(err).__name__}: {err}"))
    assert not failures, failures[:5]
    assert named > 100  # the table really breaks things


def test_market_neutral_needs_benchmarks_and_the_custom_engine(base):
    data = copy.deepcopy(base)
    data["sleeves"]["trend_long"]["risk"] = {"market_neutral": True}
    assert parse_manifest(data).sleeves["trend_long"].risk.market_neutral
    data["universes"]["us_large_caps"]["benchmarks"] = []
    data["sleeves"]["trend_long"]["risk_profiles"] = ["hrp", "min_variance"]
    with pytest.raises(ManifestError, match=r"sleeves\.trend_long\.risk\.market_neutral: .*benchmarks is empty"):
        parse_manifest(data)


def test_yaml_merge_keys_still_load_and_bad_keys_are_yaml_errors():
    from quant_assets.config.manifest import _UniqueKeyLoader

    text = "a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n"
    assert yaml.load(text, Loader=_UniqueKeyLoader) == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}
    with pytest.raises(yaml.YAMLError, match="duplicate key 'b'"):
        yaml.load("b: 1\nb: 2\n", Loader=_UniqueKeyLoader)
    with pytest.raises(yaml.YAMLError, match="unhashable key"):
        yaml.load("? [1, 2]\n: x\n", Loader=_UniqueKeyLoader)


def test_a_universe_trades_on_its_asset_class_calendar_unless_it_names_one(base):
    m = parse_manifest(copy.deepcopy(base))
    assert {u: c.trading_calendar.name for u, c in m.universes.items()} == {
        "us_large_caps": "XNYS",
        "us_factor_etfs": "XNYS",
    }
    data = copy.deepcopy(base)
    data["universes"]["us_large_caps"]["asset_class"] = "crypto"
    data["universes"]["us_factor_etfs"]["calendar"] = "XLON"
    m = parse_manifest(data)
    assert (
        m.universes["us_large_caps"].trading_calendar.name,
        m.universes["us_large_caps"].trading_calendar.annualisation,
    ) == ("24/7", 365)
    assert m.universes["us_factor_etfs"].trading_calendar.name == "XLON"


def test_an_unknown_calendar_is_a_manifest_error_naming_the_universe(base):
    data = copy.deepcopy(base)
    data["universes"]["us_factor_etfs"]["calendar"] = "NASDAQ_TYPO"
    with pytest.raises(
        ManifestError, match=r"universes\.us_factor_etfs\.calendar.*unknown trading calendar 'NASDAQ_TYPO'"
    ):
        parse_manifest(data)
