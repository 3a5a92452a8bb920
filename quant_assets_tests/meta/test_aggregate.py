"""Meta-layer maths with exact numbers: aggregation, flattening (signed, nested), cluster tree."""

import numpy as np
import pandas as pd
import pytest

from quant_assets.meta.aggregate import (
    CONTRIBUTION_COLUMNS,
    NET_COLUMNS,
    aggregate,
    cluster_tree,
    flatten,
    net_by_symbol,
    sleeve_contributions,
)


def sleeve(rows, direction="LONG"):
    return pd.DataFrame(
        {
            "symbol": [s for s, _ in rows],
            "atom_id": [f"{s}|trend|{direction.lower()}" for s, _ in rows],
            "direction": direction,
            "weight": [w for _, w in rows],
        }
    )


def test_aggregator_inner_join_keeps_common_dates_only():
    # The seeds' example: crypto_short lacks 01-03, so the inner join has two rows.
    streams = {
        "crypto_long": pd.Series([0.01, 0.02, 0.03], index=pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"])),
        "crypto_short": pd.Series([0.02, 0.01], index=pd.to_datetime(["2026-01-01", "2026-01-02"])),
    }
    matrix, info = aggregate(streams, join="inner")
    assert len(matrix) == 2
    assert list(matrix.columns) == ["crypto_long", "crypto_short"]
    assert matrix["crypto_long"].tolist() == [0.01, 0.02]
    assert info == {"union_days": 3, "kept_days": 2, "lost_share": pytest.approx(1 / 3)}
    outer, _ = aggregate(streams, join="outer")
    assert len(outer) == 3


def test_aggregator_normalises_timezones():
    # tz-naive against tz-aware used to make inner joins silently empty.
    naive = pd.Series([0.01, 0.02], index=pd.to_datetime(["2026-01-01", "2026-01-02"]))
    aware = pd.Series([0.03, 0.04], index=pd.to_datetime(["2026-01-01", "2026-01-02"]).tz_localize("UTC"))
    matrix, _ = aggregate({"a": naive, "b": aware})
    assert len(matrix) == 2
    with pytest.raises(ValueError, match="stream 'a' has duplicated dates"):
        aggregate({"a": pd.Series([1.0, 2.0], index=pd.to_datetime(["2026-01-01", "2026-01-01"]))})


def test_flattener_projection_seed_example():
    meta_weights = pd.Series({"crypto_long": 0.6, "crypto_short": 0.4})
    rows = {
        "crypto_long": sleeve_contributions("crypto_long", sleeve([("BTCUSDT", 0.5), ("ETHUSDT", 0.5)])),
        "crypto_short": sleeve_contributions("crypto_short", sleeve([("XRPUSDT", 1.0)])),
    }
    flat = net_by_symbol(flatten("meta", meta_weights, rows)).set_index("symbol")
    assert flat.loc["BTCUSDT", "net_weight"] == pytest.approx(0.30)
    assert flat.loc["ETHUSDT", "net_weight"] == pytest.approx(0.30)
    assert flat.loc["XRPUSDT", "net_weight"] == pytest.approx(0.40)
    assert flat["net_weight"].sum() == pytest.approx(1.0)


def test_short_sleeve_flattens_to_negative_weights_and_nets_against_longs():
    meta_weights = pd.Series({"longs": 0.6, "shorts": 0.4})
    rows = {
        "longs": sleeve_contributions("longs", sleeve([("BTC", 0.5), ("ETH", 0.5)])),
        "shorts": sleeve_contributions("shorts", sleeve([("XRP", 0.75), ("BTC", 0.25)], "SHORT")),
    }
    contributions = flatten("m", meta_weights, rows)
    flat = net_by_symbol(contributions).set_index("symbol")
    assert flat.loc["XRP", "net_weight"] == pytest.approx(-0.30)
    # BTC: +0.30 long path, -0.10 short path -> net +0.20, both directions kept apart.
    assert flat.loc["BTC", ["net_weight", "long_weight", "short_weight"]].tolist() == pytest.approx([0.20, 0.30, 0.10])
    assert flat.loc["BTC", "n_paths"] == 2
    assert flat.loc["BTC", "contributors"] == "m/longs +0.3000; m/shorts -0.1000"
    # Conservation: sum of |path contributions| = gross of the net view + what netting cancelled.
    gross_paths = contributions["contribution"].abs().sum()
    assert gross_paths == pytest.approx(1.0)
    assert flat["net_weight"].abs().sum() + 2 * 0.10 == pytest.approx(gross_paths, abs=1e-12)


def test_nested_two_level_flatten():
    # root = 0.7 x inner + 0.3 x etf; inner = 0.5 x a + 0.5 x b (b short).
    inner = flatten(
        "inner",
        pd.Series({"a": 0.5, "b": 0.5}),
        {
            "a": sleeve_contributions("a", sleeve([("X", 0.4), ("Y", 0.6)])),
            "b": sleeve_contributions("b", sleeve([("Y", 1.0)], "SHORT")),
        },
    )
    root = flatten(
        "root",
        pd.Series({"inner": 0.7, "etf": 0.3}),
        {
            "inner": inner,
            "etf": sleeve_contributions("etf", sleeve([("Z", 1.0)])),
        },
    )
    flat = net_by_symbol(root).set_index("symbol")["net_weight"]
    assert flat["X"] == pytest.approx(0.7 * 0.5 * 0.4)  # 0.14
    assert flat["Y"] == pytest.approx(0.7 * 0.5 * 0.6 - 0.7 * 0.5 * 1.0)  # -0.14
    assert flat["Z"] == pytest.approx(0.3)
    paths = set(root["path"])
    assert paths == {"root/inner/a", "root/inner/b", "root/etf"}
    y_short = root[(root["symbol"] == "Y") & (root["direction"] == "SHORT")].iloc[0]
    assert y_short["path_weight"] == pytest.approx(0.35) and y_short["sleeve_weight"] == 1.0
    assert root["contribution"].sum() == pytest.approx(flat.sum(), abs=1e-12)


def test_zero_weight_and_empty_children_contribute_nothing():
    rows = {"a": sleeve_contributions("a", sleeve([("X", 1.0)])), "cash": sleeve_contributions("cash", sleeve([]))}
    out = flatten("m", pd.Series({"a": 1.0, "cash": 0.0}), rows)
    assert out["path"].tolist() == ["m/a"]
    assert net_by_symbol(flatten("m", pd.Series({"cash": 1.0}), rows)).empty


def test_cluster_tree_levels_and_intra_weights():
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(0, 0.01, 300), rng.normal(0, 0.01, 300)
    returns = pd.DataFrame({"a": f1 + rng.normal(0, 1e-4, 300), "b": f1 + rng.normal(0, 1e-4, 300), "c": f2})
    w = pd.Series({"a": 0.2, "b": 0.3, "c": 0.5})
    tree = cluster_tree("m", w, returns, 0.5, refs={"c": "meta_cluster_tree_c_hrp"})
    clusters = tree[tree["kind"] == "cluster"].set_index("node")["weight"].sort_values()
    assert clusters.tolist() == pytest.approx([0.5, 0.5])
    children = tree[tree["kind"] == "child"].set_index("node")
    assert children.loc["a", "intra_weight"] == pytest.approx(0.4)
    assert children.loc["b", "intra_weight"] == pytest.approx(0.6)
    assert children.loc["a", "parent"] == children.loc["b", "parent"] != children.loc["c", "parent"]
    assert children.loc["c", "ref"] == "meta_cluster_tree_c_hrp"
    assert tree.loc[tree["kind"] == "meta", "weight"].item() == pytest.approx(1.0)


# ---- health gate and allocation -------------------------------------------------------------

from quant_assets.allocation.engines.base import EngineOutput  # noqa: E402
from quant_assets.allocation.optimise import Engine, register_engine  # noqa: E402
from quant_assets.audit.checks import meta_weights_problem  # noqa: E402
from quant_assets.meta.aggregate import allocate, health_vetoes, success_share  # noqa: E402


@pytest.fixture(scope="module")
def three_children():
    rng = np.random.default_rng(7)
    return pd.DataFrame(rng.normal(0.0005, [0.01, 0.02, 0.015], (120, 3)), columns=["a", "b", "c"])


def test_health_gate_vetoes_with_reasons(three_children):
    m = three_children.assign(cash=0.0)
    shares = {
        "a": success_share([True, True, True, False]),
        "b": success_share([True, False, False, True]),
        "c": float("nan"),
    }
    assert shares["a"] == 0.75 and shares["b"] == 0.5
    vetoed = health_vetoes(m, shares, threshold=0.75)
    assert vetoed == {
        "b": "optimisation success 50% < 75% over the window",
        "cash": "flat stream: no investable data in the window",
    }


def test_vetoed_child_gets_zero_and_the_rest_renormalise(three_children):
    alloc = allocate(
        three_children,
        profile="hrp",
        engine="skfolio",
        chain=("hrp", "equal_weight"),
        lower=0.05,
        upper=0.9,
        min_history=1000,
        vetoed={"b": "optimisation success 50% < 75%"},
    )
    assert alloc.weights.to_dict() == pytest.approx({"a": 0.5, "b": 0.0, "c": 0.5})
    assert alloc.status.startswith("equal_weight: 120 < 1000 days of history; vetoed b")
    assert meta_weights_problem(alloc.weights, 0.05, 0.9, set(alloc.vetoed)) is None
    assert "vetoed children hold weight" in meta_weights_problem(
        pd.Series({"a": 0.5, "b": 0.1, "c": 0.4}), 0.05, 0.9, {"b"}
    )
    optimised = allocate(
        three_children,
        profile="min_variance",
        engine="skfolio",
        chain=("min_variance",),
        lower=0.0,
        upper=1.0,
        min_history=60,
        vetoed={"b": "x"},
    )
    # min-variance of the two survivors (sigma 1% vs 1.5%, ~uncorrelated) is ~ (1/1)/(1/1+1/2.25) = 0.69 / 0.31
    assert optimised.weights["b"] == 0.0 and optimised.weights.sum() == pytest.approx(1.0)
    assert optimised.weights["a"] == pytest.approx(0.69, abs=0.05)


def test_bounds_relax_when_vetoes_leave_too_few_children(three_children):
    two = three_children[["a", "b"]]
    alloc = allocate(
        two, profile="hrp", engine="skfolio", chain=("hrp",), lower=0.1, upper=0.9, min_history=10, vetoed={"b": "flat"}
    )
    assert alloc.weights.to_dict() == {"a": 1.0, "b": 0.0}
    assert "max weight relaxed to 1.0000 for 1 healthy children" in alloc.status
    everyone = allocate(
        two,
        profile="hrp",
        engine="skfolio",
        chain=("hrp",),
        lower=0.1,
        upper=0.9,
        min_history=10,
        vetoed={"a": "flat", "b": "flat"},
    )
    assert everyone.weights.to_dict() == {"a": 0.5, "b": 0.5}
    assert everyone.status.startswith("equal_weight: every child vetoed")


class Stub(Engine):
    """A test engine given as `weights(profile, X)`: what a plugin author writes first."""

    def run(self, request):
        return EngineOutput(np.asarray(self.weights(request.profile, request.X), dtype=float), {})


class AlwaysFails(Stub):
    name = "always_fails_stub"

    def weights(self, profile, returns):
        raise RuntimeError(f"{profile} exploded on purpose")


def test_meta_fallback_chain_through_a_failing_engine(three_children):
    register_engine(AlwaysFails())
    alloc = allocate(
        three_children,
        profile="hrp",
        engine="always_fails_stub",
        chain=("hrp", "min_variance", "max_sharpe", "equal_weight"),
        lower=0.0,
        upper=1.0,
        min_history=10,
        vetoed={},
    )
    assert alloc.profile_used == "equal_weight" and alloc.engine == "platform"
    assert alloc.status.startswith(
        "fallback: always_fails_stub/hrp:failed (RuntimeError: hrp exploded on purpose)"
        " -> always_fails_stub/min_variance:failed"
    )
    assert "always_fails_stub/max_sharpe:failed" in alloc.status and "platform/equal_weight:success" in alloc.status
    assert alloc.weights.sum() == pytest.approx(1.0)


def test_child_without_a_stream_is_vetoed_only_when_others_have_data(three_children):
    m = three_children.assign(new=np.nan)  # a sleeve whose universe is not listed yet
    assert health_vetoes(m, {}, 0.75) == {"new": "no stream in the window"}
    empty = pd.DataFrame({"a": [np.nan], "b": [np.nan]})
    assert health_vetoes(empty, {}, 0.75) == {}  # nobody has history yet: a history question


def test_meta_stream_outer_join_keeps_every_realised_day():
    # child b misses a day: with weights {a: 1, b: 0} the parent must still earn a's three days
    a = pd.Series([0.1, 0.1, 0.1], index=pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]))
    b = pd.Series([0.0, 0.0], index=pd.to_datetime(["2020-01-01", "2020-01-02"]))
    from quant_assets.simulation.simulate import drift

    matrix, _ = aggregate({"a": a, "b": b}, join="outer")
    port, _ = drift(pd.Series({"a": 1.0, "b": 0.0}), matrix[["a", "b"]])
    assert np.prod(1 + port.to_numpy()) == pytest.approx(1.331)


def test_a_single_child_meta_holds_it_at_one_and_says_so(base_manifest):
    """Allowed (a wrapper meta gives one child its own lens, report and orders at a root); its
    allocation is trivially 1.0, recorded as such instead of dressed up as an optimisation."""
    from quant_assets.config.manifest import parse_manifest
    from quant_assets.meta.aggregate import AllocationOutcome, allocate_array

    data = dict(base_manifest, metas={"solo": {"children": ["sleeve:trend_long"]}})
    assert [str(c) for c in parse_manifest(data).metas["solo"].children] == ["sleeve:trend_long"]
    rng = np.random.default_rng(0)
    alloc = allocate_array(
        rng.normal(0, 0.01, (300, 1)),
        ["trend_long"],
        profile="hrp",
        engine="custom",
        chain=("hrp", "equal_weight"),
        lower=0.0,
        upper=1.0,
        min_history=60,
        vetoed={},
    )
    assert alloc.values.tolist() == [1.0]
    assert alloc.outcome is AllocationOutcome.SINGLE_CHILD
    assert alloc.status == "single_child: trend_long holds 1.0 by construction (no optimisation)"


@pytest.fixture(scope="module")
def base_manifest() -> dict:
    import yaml

    from quant_assets.config.manifest import default_manifest_path

    return yaml.safe_load(default_manifest_path().read_text())


def test_aligned_streams_give_exactly_the_per_date_joins():
    """One day axis per step (AlignedStreams) must reproduce window_matrix / outer_matrix bit for
    bit: children with gaps, a child that starts late, a stored NaN value, windows of every size."""
    from quant_assets.data.hashing import iso_days
    from quant_assets.meta.aggregate import AlignedStreams, ChildStream, outer_matrix, window_matrix

    rng = np.random.default_rng(11)
    days = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-12-31")).astype("datetime64[D]")
    days = days[np.isin((days.astype(int) + 3) % 7, [0, 1, 2, 3, 4])]  # weekdays
    fridays = days[(days.astype(int) + 3) % 7 == 4]
    ok = np.searchsorted(fridays, days) < len(fridays)  # days after the last Friday belong to no period
    days = days[ok]
    periods = fridays[np.searchsorted(fridays, days)]  # each day's holding period ends on its Friday
    streams = {}
    for name in ["a", "b", "c"]:
        keep = rng.random(len(days)) > 0.1  # gaps
        if name == "c":
            keep &= days >= np.datetime64("2020-06-01")  # starts late
        values = rng.normal(0, 0.01, keep.sum())
        if name == "b":
            values[5] = np.nan  # a stored NaN is a row, not a gap
        streams[name] = ChildStream(periods[keep], days[keep], values)
    names = ["a", "b", "c"]
    aligned = AlignedStreams.of(streams, names)
    assert aligned is not None
    for i, d in enumerate(fridays):
        for lookback in (0, 3, 10, 60):
            after = fridays[max(i - lookback, 0)] if lookback else None
            for tail in (0, 20):
                d_ref, m_ref, info_ref = window_matrix(streams, names, after, d, tail)
                d_new, m_new, info_new = aligned.window(after, d, tail)
                np.testing.assert_array_equal(d_new, d_ref)
                np.testing.assert_array_equal(m_new, m_ref)  # NaN == NaN positions included
                assert info_new == info_ref
                assert aligned.iso(d_new) == iso_days(d_ref)  # the ledger's text of the window's days
        if i:
            d_ref, m_ref = outer_matrix(streams, names, fridays[i - 1], d)
            d_new, m_new = aligned.outer(fridays[i - 1], d)
            np.testing.assert_array_equal(d_new, d_ref)
            np.testing.assert_array_equal(m_new, m_ref)


def test_a_join_of_a_24_7_child_and_an_exchange_child_compounds_the_weekend_into_monday():
    """The exchange child has no weekend rows; the crypto child's Saturday and Sunday returns are
    not dropped but compounded into its Monday row (the exchange child's Monday already spans
    Friday's close to Monday's), and the join says which child lacked the days."""
    from quant_assets.meta.aggregate import AlignedStreams, ChildStream, window_matrix

    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-15")).astype("datetime64[D]")  # Mon..Sun x2
    weekday = (days.astype(int) + 3) % 7 < 5
    period = np.full(len(days), np.datetime64("2024-01-14"))
    crypto = 0.01 * np.arange(1, len(days) + 1)
    stocks = -0.001 * np.arange(1, weekday.sum() + 1)
    streams = {
        "crypto": ChildStream(period, days, crypto),
        "stocks": ChildStream(period[weekday], days[weekday], stocks),
    }
    names = ["crypto", "stocks"]
    got_days, matrix, info = window_matrix(streams, names, None, np.datetime64("2024-01-14"), 0)
    np.testing.assert_array_equal(got_days, days[weekday])
    np.testing.assert_array_equal(matrix[:, 1], stocks)
    monday = int(np.flatnonzero(days[weekday] == np.datetime64("2024-01-08"))[0])
    # crypto on Monday 8 January: Saturday 6 (0.06), Sunday 7 (0.07), Monday 8 (0.08) compounded
    assert matrix[monday, 0] == pytest.approx(1.06 * 1.07 * 1.08 - 1, abs=1e-15)
    assert matrix[monday + 1, 0] == crypto[8]  # Tuesday: untouched, bit for bit
    assert matrix[0, 0] == crypto[0]
    assert info == {
        "union_days": 14,
        "kept_days": 10,
        "lost_days": 4,
        "lost_share": pytest.approx(4 / 14),
        "missing_by_child": {"stocks": 4},
    }
    aligned = AlignedStreams.of(streams, names)
    a_days, a_matrix, a_info = aligned.window(None, np.datetime64("2024-01-14"), 0)
    np.testing.assert_array_equal(a_matrix, matrix)
    assert a_info == info


# --- the per-date definition on column lists: what the meta step computed date by date before
# `flatten_paths`, kept here as the reference it must equal bit for bit ---


def flatten_rows(
    meta: str, child_weights: list[tuple[str, float]], child_rows: dict[str, dict[str, list]]
) -> dict[str, list]:
    """`flatten` on column lists (CONTRIBUTION_COLUMNS): each child's rows scaled by its weight, path prefixed."""
    out: dict[str, list] = {c: [] for c in CONTRIBUTION_COLUMNS}
    for child, w in child_weights:
        rows = child_rows.get(child)
        if not rows or not rows["symbol"] or w == 0:
            continue
        out["symbol"] += rows["symbol"]
        out["path"] += [f"{meta}/{p}" for p in rows["path"]]
        out["sleeve"] += rows["sleeve"]
        out["atom_id"] += rows["atom_id"]
        out["direction"] += rows["direction"]
        out["path_weight"] += [p * w for p in rows["path_weight"]]
        out["sleeve_weight"] += rows["sleeve_weight"]
        out["contribution"] += [c * w for c in rows["contribution"]]
    return out


def sleeve_rows(
    sleeve: str, atom_ids: list[str], symbols: list[str], direction: str, weights: np.ndarray
) -> dict[str, list]:
    """`sleeve_contributions` on column lists: path = sleeve, path weight 1, signed by direction."""
    d = direction.upper()
    sign = -1.0 if d == "SHORT" else 1.0
    n = len(atom_ids)
    return {
        "symbol": list(symbols),
        "path": [sleeve] * n,
        "sleeve": [sleeve] * n,
        "atom_id": list(atom_ids),
        "direction": [d] * n,
        "path_weight": [1.0] * n,
        "sleeve_weight": [float(w) for w in weights],
        "contribution": [sign * float(w) for w in weights],
    }


def net_rows(contributions: dict[str, list]) -> dict[str, list]:
    """`net_by_symbol` on column lists: signed net per symbol, long and short gross apart, the paths
    behind it (largest first), ordered by |net| descending."""
    acc: dict[str, list] = {}
    for sym, path, c in zip(contributions["symbol"], contributions["path"], contributions["contribution"]):
        a = acc.get(sym)
        if a is None:
            a = acc[sym] = [0.0, 0.0, 0.0, []]
        a[0] += c
        if c > 0:
            a[1] += c
        elif c < 0:
            a[2] -= c
        a[3].append((path, c))
    symbols = list(acc)
    net = np.array([acc[s][0] for s in symbols])
    order = np.argsort(-np.abs(net), kind="stable")
    out: dict[str, list] = {c: [] for c in NET_COLUMNS}
    for i in order:
        s = symbols[i]
        a = acc[s]
        out["symbol"].append(s)
        out["net_weight"].append(a[0])
        out["long_weight"].append(a[1])
        out["short_weight"].append(a[2])
        out["n_paths"].append(len(a[3]))
        out["contributors"].append("; ".join(f"{p} {v:+.4f}" for p, v in sorted(a[3], key=lambda t: -abs(t[1]))))
    return out


def test_flattening_every_date_at_once_equals_the_per_date_loop_bit_for_bit():
    """`flatten_paths` (all dates of a run in one pass, what the meta step runs) gives exactly what
    `flatten_rows` then `net_rows` give date by date: the same rows in the same order, the same
    floats to the bit, the same contributor texts. The data exercise the edge cases: a symbol held
    long and short (netting), zero and missing child weights, a child without rows on a date, a
    child meta's nested paths, equal |net| and equal |contribution| (ties keep appearance order)."""
    from quant_assets.meta.aggregate import ChildPaths, flatten_paths

    rng = np.random.default_rng(7)
    n_days, symbols = 40, [f"S{i}" for i in range(9)]
    sleeves = {"a": "LONG", "b": "SHORT", "c": "long"}
    names = ["a", "b", "c", "inner"]
    weights = rng.dirichlet(np.ones(len(names)), size=n_days)
    weights[3, 1] = 0.0  # a zero weight
    weights[5] = [0.25, 0.25, 0.25, 0.25]  # equal weights: ties in |net| and |contribution|
    per_day: list[dict[str, dict[str, list]]] = [{} for _ in range(n_days)]
    children: list = []
    for name, direction in sleeves.items():
        day, ids, syms, dirs, w = [], [], [], [], []
        for t in range(n_days):
            if name == "c" and t % 7 == 0:
                continue  # no rows on the date
            held = sorted(rng.choice(len(symbols), size=int(rng.integers(1, 5)), replace=False).tolist())
            x = np.full(len(held), 1 / len(held)) if t == 5 else rng.dirichlet(np.ones(len(held)))
            ids_t = [f"{name}_{symbols[i]}" for i in held]
            per_day[t][name] = sleeve_rows(name, ids_t, [symbols[i] for i in held], direction, x)
            day += [t] * len(held)
            ids += ids_t
            syms += [symbols[i] for i in held]
            dirs += [direction] * len(held)
            w += x.tolist()
        children.append(ChildPaths.of_sleeve(name, np.array(day), ids, syms, dirs, np.array(w)))
    inner: dict[str, list] = {c: [] for c in ("day", *CONTRIBUTION_COLUMNS)}
    for t in range(n_days):  # a child meta: its own flattening of two of the sleeves
        if t == 9:
            continue
        nested = flatten_rows("inner", [("a", 0.6), ("b", 0.4)], per_day[t])
        per_day[t]["inner"] = nested
        inner["day"] += [t] * len(nested["symbol"])
        for c in CONTRIBUTION_COLUMNS:
            inner[c] += nested[c]
    children.append(
        ChildPaths(
            np.array(inner["day"], dtype=np.int64),
            *(inner[c] for c in ("symbol", "path", "sleeve", "atom_id", "direction")),
            *(np.array(inner[c], dtype=float) for c in ("path_weight", "sleeve_weight", "contribution")),
        )
    )
    children.append(None)  # a trailing child without holdings
    weights = np.c_[weights, np.full(n_days, 0.0)]

    contributions, flat = flatten_paths("root", weights, children)
    expected_c: dict[str, list] = {c: [] for c in ("day", *CONTRIBUTION_COLUMNS)}
    expected_n: dict[str, list] = {c: [] for c in ("day", *NET_COLUMNS)}
    for t in range(n_days):
        pairs = list(zip([*names, "none"], weights[t].tolist()))
        rows = flatten_rows("root", pairs, per_day[t])
        net = net_rows(rows)
        expected_c["day"] += [t] * len(rows["symbol"])
        expected_n["day"] += [t] * len(net["symbol"])
        for c in CONTRIBUTION_COLUMNS:
            expected_c[c] += rows[c]
        for c in NET_COLUMNS:
            expected_n[c] += net[c]
    assert len(expected_c["symbol"]) > 400 and any(n > 1 for n in expected_n["n_paths"])
    assert any(lw > 0 and sw > 0 for lw, sw in zip(expected_n["long_weight"], expected_n["short_weight"]))
    for c in ("day", *CONTRIBUTION_COLUMNS):
        assert list(contributions[c]) == expected_c[c], c  # floats compared exactly
    for c in ("day", *NET_COLUMNS):
        assert list(flat[c]) == expected_n[c], c


def test_flattening_nothing_held_gives_empty_columns():
    from quant_assets.meta.aggregate import flatten_paths

    contributions, flat = flatten_paths("root", np.ones((3, 2)) / 2, [None, None])
    assert len(contributions["day"]) == 0 and flat["symbol"] == [] and set(flat) == {"day", *NET_COLUMNS}
