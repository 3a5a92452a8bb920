"""The whole default graph, materialised in process over 13 weekly dates of real bundled data.

The test manifest is the default one with a short calendar (2019-01-04 .. 2019-03-29) cut into
monthly partitions, so one run covers three partitions and everything that crosses a partition
boundary (trailing windows, previous weights, wealth) is exercised; the tournament is switched on.
Asserts the invariants a reviewer would check by hand: every asset and check ran for every
partition, weights sum and sign correctly, meta bounds hold, only physical symbols come out,
nothing reads a date after its rebalance date, and re-materialising a partition changes nothing.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quant_assets.assets.common import instance_lookup
from quant_assets.assets.event_log import ephemeral_instance
from quant_assets.audit.ledger import AuditLedger
from quant_assets.cli.runner import materialize_range
from quant_assets.config.manifest import load_manifest, parse_manifest
from quant_assets.definitions import build_definitions
from quant_assets.storage.lakehouse import Lakehouse

pytestmark = pytest.mark.slow  # materialises graphs: `make test-fast` skips it

START, END = dt.date(2019, 1, 1), dt.date(2019, 3, 31)  # 13 Fridays: 2019-01-04 .. 2019-03-29
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
PARTITIONS = ["2019-01", "2019-02", "2019-03"]


def manifest_for_tests():
    data = load_manifest().model_dump(mode="json")
    data["calendar"].update(start="2019-01-01", end="2019-04-06", partition="month")
    data["lookbacks"]["meta_min_history_days"] = 20  # so metas optimise inside a short range
    data["tournament"]["sleeves"] = None  # every sleeve
    return parse_manifest(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lakehouse")
    manifest = manifest_for_tests()
    defs = build_definitions(manifest, root)
    instance = ephemeral_instance()
    result = materialize_range(defs, manifest, START, END, instance, run_config=QUIET)
    return {"result": result, "lh": Lakehouse(root), "defs": defs, "manifest": manifest, "instance": instance}


def q(world, sql) -> pd.DataFrame:
    return world["lh"].sql(sql).to_pandas()


def test_every_asset_and_check_ran_for_every_partition(world):
    res = world["result"]
    assert res.success
    mats = [e for e in res.get_asset_materialization_events()]
    per_asset = pd.Series([e.asset_key.to_user_string() for e in mats]).value_counts()
    materialisable = world["defs"].resolve_asset_graph().materializable_asset_keys
    assert len(per_asset) == len(materialisable) == 139 and (per_asset == 3).all()
    assert sorted({e.partition for e in mats}) == PARTITIONS
    # each partition's metadata describes that partition: its own dates and rows
    sel = {
        e.partition: e.materialization.metadata for e in mats if e.asset_key.to_user_string() == "selection_trend_long"
    }
    assert [sel[k]["first_date"].value for k in PARTITIONS] == ["2019-01-04", "2019-02-01", "2019-03-01"]
    assert [sel[k]["rebalance_dates"].value for k in PARTITIONS] == [4, 4, 5]
    evaluations = res.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    assert {e.check_name for e in evaluations} == {
        "health_coverage",
        "weights_valid",
        "returns_in_bounds",
        "audit_complete",
        "directional_sign_test",
        "weights_within_bounds",
        "physical_and_conserved",
        "stages_consistent",
    }


def test_no_rebalance_date_reads_past_itself(world):
    for table in ("meta_returns", "sleeve_returns", "meta_portfolio_returns"):
        late = q(world, f"SELECT count(*) AS n FROM {table} WHERE date > rebalance_date")["n"][0]
        assert late == 0, table
    # daily data is stored once per session: no duplicates, and partitions hold their own dates
    dup = q(
        world, "SELECT count(*) AS n FROM (SELECT universe, date, symbol FROM prices GROUP BY ALL HAVING count(*) > 1)"
    )
    assert dup["n"][0] == 0
    warm_up = q(world, "SELECT min(date) AS d FROM prices")["d"][0]
    assert pd.Timestamp(warm_up) < pd.Timestamp("2017-02-01")  # the first partition's warm-up window
    # Out-of-sample: a period's returns are strictly after the date its weights were decided.
    bad = q(world, "SELECT count(*) AS n FROM sleeve_returns WHERE date <= weights_date")["n"][0]
    assert bad == 0
    first = q(world, "SELECT min(rebalance_date) AS d FROM sleeve_returns")["d"][0]
    assert pd.Timestamp(first).date() == dt.date(2019, 1, 11)  # the first date has no previous weights


def test_sleeve_weights_sum_to_one_and_carry_their_sign(world):
    w = q(
        world,
        "SELECT sleeve, risk, rebalance_date, sum(weight) AS s, sum(net_weight) AS net, "
        "min(weight) AS lo, count(*) AS n FROM sleeve_weights GROUP BY ALL",
    )
    assert len(w) == 4 * 5 * 13
    np.testing.assert_allclose(w["s"], 1.0, atol=1e-9)
    assert (w["lo"] > 0).all()
    np.testing.assert_allclose(w.loc[w["sleeve"] == "trend_short", "net"], -1.0, atol=1e-9)
    np.testing.assert_allclose(w.loc[w["sleeve"] != "trend_short", "net"], 1.0, atol=1e-9)
    sel = q(world, "SELECT sleeve, rebalance_date, count(*) FILTER (WHERE selected) AS k FROM selection GROUP BY ALL")
    assert sel["k"].min() >= 2 and (sel.loc[sel["sleeve"] == "trend_long", "k"] <= 8).all()


def test_short_sleeve_picks_the_weakest_momentum(world):
    d = "2019-03-29"
    feats = q(world, f"SELECT symbol, momentum FROM features WHERE universe='us_large_caps' AND rebalance_date='{d}'")
    top = q(world, f"SELECT symbol FROM selection WHERE sleeve='trend_short' AND rebalance_date='{d}' AND rank=1")
    assert top["symbol"][0] == feats.sort_values("momentum")["symbol"].iloc[0]


def test_meta_weights_within_bounds_and_optimised_once_history_exists(world):
    m = world["manifest"]
    w = q(world, "SELECT meta, risk, rebalance_date, child, weight, status, vetoed FROM meta_weights")
    for meta, group in w.groupby("meta"):
        lo, hi = m.metas[meta].min_weight, m.metas[meta].max_weight
        live = group[group["vetoed"] == ""]
        n_live = live.groupby(["risk", "rebalance_date"])["child"].transform("count")
        feasible = n_live * hi >= 1 - 1e-12  # one survivor cannot be held to max_weight < 1: it takes all
        assert live.loc[feasible, "weight"].between(lo - 1e-9, hi + 1e-9).all(), meta
        np.testing.assert_allclose(live.loc[~feasible, "weight"], 1.0, atol=1e-12)
        assert (group.loc[group["vetoed"] != "", "weight"] == 0).all(), meta  # a vetoed child gets nothing
        np.testing.assert_allclose(group.groupby(["risk", "rebalance_date"])["weight"].sum(), 1.0, atol=1e-9)
    early = w[w["rebalance_date"] == pd.Timestamp("2019-01-11")]
    assert early["status"].str.startswith("equal_weight").all()
    late = w[w["rebalance_date"] == pd.Timestamp("2019-03-29")]
    assert not late["status"].str.startswith("equal_weight").any()


def test_flattened_weights_are_physical_and_traceable(world):
    flat = q(
        world,
        "SELECT f.meta, f.risk, f.rebalance_date, f.symbol, f.net_weight, f.long_weight, f.short_weight "
        "FROM flattened_weights f",
    )
    listed = q(world, "SELECT DISTINCT rebalance_date, symbol FROM candidates")
    merged = flat.merge(listed, on=["rebalance_date", "symbol"], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert flat["symbol"].str.contains(":").all()  # EXCHANGE:TICKER, never an atom or sleeve id
    np.testing.assert_allclose(flat["long_weight"] - flat["short_weight"], flat["net_weight"], atol=1e-12)
    gross = flat.groupby(["meta", "risk", "rebalance_date"])[["long_weight", "short_weight"]].sum().sum(axis=1)
    np.testing.assert_allclose(gross, 1.0, atol=1e-9)  # no leverage leaks through the tree
    assert (flat.loc[flat["meta"] == "total_portfolio", "net_weight"] < 0).any()  # the short sleeve survives


def test_nested_flatten_equals_parent_weight_times_child_contributions(world):
    d, risk = "2019-03-29", "hrp"
    w = q(
        world,
        f"SELECT child, weight FROM meta_weights WHERE meta='total_portfolio' AND risk='{risk}' "
        f"AND rebalance_date='{d}'",
    ).set_index("child")["weight"]
    inner = q(
        world,
        f"SELECT symbol, sum(contribution) AS c FROM flattened_contributions WHERE meta='us_stocks' "
        f"AND risk='{risk}' AND rebalance_date='{d}' GROUP BY symbol",
    ).set_index("symbol")["c"]
    via = q(
        world,
        f"SELECT symbol, sum(contribution) AS c FROM flattened_contributions WHERE meta='total_portfolio' "
        f"AND risk='{risk}' AND rebalance_date='{d}' AND path LIKE 'total_portfolio/us_stocks/%' "
        f"GROUP BY symbol",
    ).set_index("symbol")["c"]
    pd.testing.assert_series_equal(
        via.sort_index(), (inner * w["us_stocks"]).sort_index(), check_names=False, atol=1e-12, rtol=0
    )


def test_meta_portfolio_return_is_previous_weights_times_child_streams(world):
    risk = "min_variance"
    mpr = q(
        world,
        f"SELECT date, ret, weights_date FROM meta_portfolio_returns WHERE meta='us_stocks' AND "
        f"risk='{risk}' AND rebalance_date='2019-03-29' ORDER BY date",
    )
    w = q(
        world,
        f"SELECT child, weight FROM meta_weights WHERE meta='us_stocks' AND risk='{risk}' AND "
        f"rebalance_date='{mpr['weights_date'][0].date()}'",
    ).set_index("child")["weight"]
    child = q(
        world,
        f"SELECT sleeve, date, net_return FROM sleeve_returns WHERE risk='{risk}' AND rebalance_date='2019-03-29'",
    ).pivot(index="date", columns="sleeve", values="net_return")
    first_day = float((child.iloc[0][w.index] * w).sum())
    assert mpr["ret"].iloc[0] == pytest.approx(first_day, abs=1e-12)
    # every later day: the weights have drifted with each child's own compounded stream
    values = w.to_numpy() * np.cumprod(1 + child[w.index].fillna(0.0).to_numpy(), axis=0)
    expected = values.sum(axis=1) / np.concatenate([[1.0], values.sum(axis=1)[:-1]]) - 1
    np.testing.assert_allclose(mpr["ret"].to_numpy(), expected, atol=1e-12)
    assert len(mpr) == len(child) >= 4


def test_friction_is_charged_on_rebalance_days(world):
    r = q(world, "SELECT * FROM sleeve_returns WHERE sleeve='trend_long' AND risk='equal_weight' ORDER BY date")
    charged = r[r["cost"] > 0]
    assert len(charged) == r["rebalance_date"].nunique()  # exactly one charge per holding period
    np.testing.assert_allclose(charged["cost"], charged["turnover"] * 6e-4, atol=1e-15)
    assert charged["turnover"].iloc[0] == pytest.approx(1.0)  # first period: bought from cash
    np.testing.assert_allclose(r["net_return"], (1 + r["gross_return"]) * (1 - r["cost"]) - 1, atol=1e-15)


def test_reports_are_written_per_partition_and_any_date_renders(world):
    rep = q(world, "SELECT meta, risk, rebalance_date, markdown FROM meta_report")
    assert len(rep) == 2 * 5 * 3  # the last rebalance date of each partition
    from quant_assets.data.calendars import Periods
    from quant_assets.meta.report import report_at

    m = world["manifest"]
    other = report_at(world["lh"], "us_stocks", "hrp", dt.date(2019, 2, 15), Periods(m.calendar), m.lookbacks)
    assert other.startswith("# us_stocks / hrp as of 2019-02-15") and "## Cluster tree" in other
    last = rep[(rep["meta"] == "total_portfolio") & (rep["risk"] == "hrp")].sort_values("rebalance_date").iloc[-1]
    assert "# total_portfolio / hrp as of 2019-03-29" in last["markdown"]
    md = last["markdown"]
    assert "## Cluster tree" in md and "meta_cluster_tree_us_stocks_hrp" in md
    for section in (
        "## Allocation over the last",
        "## Trailing out-of-sample performance",
        "Equity curve ",
        "## Children's correlations",
        "## Fallback and veto events",
        "## Top physical holdings",
    ):
        assert section in md, section
    assert "| child | factor_rotation | us_stocks |" in md and "| factor_rotation | 1.00 |" in md  # correlations
    # the step renders each report from its window's periods (one read per period for all the
    # reports): every stored report equals the one rendered alone from storage
    for row in rep.itertuples():
        day = pd.Timestamp(row.rebalance_date).date()
        assert row.markdown == report_at(world["lh"], row.meta, row.risk, day, Periods(m.calendar), m.lookbacks)


def test_rematerialising_a_partition_replaces_never_duplicates(world):
    tables = [
        "candidates",
        "prices",
        "returns",
        "returns_health",
        "features",
        "selection",
        "sleeve_weights",
        "sleeve_returns",
        "meta_returns",
        "meta_weights",
        "meta_cluster_tree",
        "meta_portfolio_returns",
        "flattened_weights",
        "flattened_contributions",
        "meta_report",
        "rebalance_orders",
    ]
    before = {t: q(world, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    d = dt.date(2019, 2, 15)  # the middle partition: 2019-02
    again = materialize_range(world["defs"], world["manifest"], d, d, world["instance"], run_config=QUIET)
    assert again.success
    for t in tables:
        after = q(world, f"SELECT * FROM {t} ORDER BY ALL")
        assert len(after) == len(before[t]), t
        pd.testing.assert_frame_equal(after, before[t], check_exact=False, rtol=1e-12, obj=t)


def test_blocking_check_stops_downstream(tmp_path):
    data = manifest_for_tests().model_dump(mode="json")
    data["health"]["toxic_abs_return"] = 0.01  # every stock has a >1% day: coverage collapses
    manifest = parse_manifest(data)
    defs = build_definitions(manifest, tmp_path)
    d = dt.date(2019, 1, 4)
    res = materialize_range(
        defs,
        manifest,
        d,
        d,
        ephemeral_instance(),
        raise_on_error=False,
        selection="key:*us_large_caps or key:*trend_long",
        run_config=QUIET,
    )
    assert not res.success
    failed = [e for e in res.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name) for e in failed] == [
        ("returns_us_large_caps", "health_coverage")
    ]
    assert "coverage 0.00% below 50%" in str(failed[0].metadata["failures"].value)
    done = {e.asset_key.to_user_string() for e in res.get_asset_materialization_events()}
    assert "returns_us_large_caps" in done  # what failed is stored, so it can be inspected
    assert (
        not {"features_us_large_caps", "regime_us_large_caps", "selection_trend_long", "sleeve_weights_trend_long_hrp"}
        & done
    )  # nothing computed from it
    assert Lakehouse(tmp_path).read_partition("returns_health", "returns_us_large_caps", "2019-01") is not None


def test_audit_ledger_records_every_optimisation(world):
    ledger = AuditLedger.in_lakehouse(world["lh"].root)
    assert ledger.verify().ok
    assert ledger.dangling_intents() == []
    rec = q(world, "SELECT type, step, asset, partition, status, run_id FROM audit_ledger")
    first = rec[rec["run_id"] == world["result"].run_id]  # joins to Dagster runs
    intents = first[first["type"] == "intent"].groupby("step")["asset"].count()
    assert intents["sleeve_optimise"] == 20 * 3 and intents["meta_optimise"] == 10 * 3  # one per asset partition
    outcomes = first[first["type"] == "outcome"]
    assert len(outcomes) == (first["type"] == "intent").sum()
    assert set(outcomes["status"]) <= {"success", "fallback"}
    opt = q(world, "SELECT asset, rebalance_date, status FROM audit_optimisations")
    assert (
        len(opt[opt["asset"].str.startswith("sleeve_weights")].drop_duplicates(["asset", "rebalance_date"])) == 20 * 13
    )
    assert set(opt["status"]) <= {"success", "fallback", "equal_weight", "no_assets"}
    assert {"success", "equal_weight"} <= set(opt["status"])


def test_explain_a_weight_decomposes_paths_and_names_the_runs(world):
    from quant_assets.audit.explain import ExplainError, explain

    d = dt.date(2019, 3, 29)
    flat = q(
        world,
        "SELECT symbol, net_weight, n_paths FROM flattened_weights WHERE meta='total_portfolio' AND "
        "risk='hrp' AND rebalance_date='2019-03-29' ORDER BY n_paths DESC, abs(net_weight) DESC",
    )
    symbol = flat["symbol"][0]
    ex = explain(
        world["lh"], world["manifest"], "total_portfolio", "hrp", d, symbol, instance_lookup(world["instance"])
    )
    assert ex.net_weight == pytest.approx(flat["net_weight"][0], abs=1e-15)
    assert len(ex.paths) == flat["n_paths"][0]
    assert ex.path_gap < 1e-12 and ex.sum_gap < 1e-12
    for p in ex.paths:
        assert [lv.parent for lv in p.levels][0] == "total_portfolio" and p.levels[-1].child == p.sleeve
    names = {r.asset for r in ex.inputs}
    assert {
        "flattened_weights_total_portfolio_hrp",
        "meta_weights_total_portfolio_hrp",
        "prices_us_large_caps",
    } <= names
    assert {r.partition.split(" ")[0] for r in ex.inputs} == {"2019-03"}
    runs = {r.run_id for r in ex.inputs}
    assert None not in runs  # every input partition was materialised in this instance
    weights_inputs = [r for r in ex.inputs if r.ledger_match is not None]
    assert weights_inputs and all(r.ledger_match for r in weights_inputs)
    text = ex.render()
    assert text.startswith(f"{symbol} in total_portfolio / hrp on 2019-03-29: net ")
    assert "(stored weights match)" in text and "run " in text
    with pytest.raises(ExplainError, match="'NYSE:NOPE' is not held by total_portfolio / hrp on 2019-03-29"):
        explain(world["lh"], world["manifest"], "total_portfolio", "hrp", d, "NYSE:NOPE")
    with pytest.raises(ExplainError, match="meta 'total_portfolio' has no risk lens 'kelly'"):
        explain(world["lh"], world["manifest"], "total_portfolio", "kelly", d, symbol)


def test_orders_from_cash_then_drift_from_accepted_weights(world):
    from quant_assets.execution.state import read_state, record_implemented, state_path

    path = state_path(world["lh"], "total_portfolio", "hrp")
    assert not path.exists()  # materialising never writes the user's state
    cash = q(
        world,
        "SELECT * FROM rebalance_orders WHERE meta='total_portfolio' AND risk='hrp' AND rebalance_date='2019-03-29'",
    )
    target = q(
        world,
        "SELECT symbol, net_weight FROM flattened_weights WHERE meta='total_portfolio' AND risk='hrp' "
        "AND rebalance_date='2019-03-29'",
    ).set_index("symbol")["net_weight"]
    assert cash["implemented_as_of"].isna().all() and (cash["implemented"] == 0).all()
    opened = cash.groupby("symbol")["drift"].first()
    pd.testing.assert_series_equal(
        opened.sort_index(), target[target.abs() >= 1e-4].sort_index(), check_names=False, atol=1e-15
    )
    assert set(cash.loc[cash["target"] < 0, "action"]) == {"SELL_SHORT"}
    assert set(cash.loc[cash["target"] > 0, "action"]) == {"BUY"}
    # accept the first date's target, re-materialise the orders of the last date
    first = q(
        world,
        "SELECT symbol, net_weight FROM flattened_weights WHERE meta='total_portfolio' AND risk='hrp' "
        "AND rebalance_date='2019-01-04'",
    )
    record_implemented(path, dt.date(2019, 1, 4), pd.Series(first["net_weight"].to_numpy(), index=first["symbol"]))
    assert set(read_state(path)["as_of"]) == {dt.date(2019, 1, 4)}
    d = dt.date(2019, 3, 29)
    again = materialize_range(
        world["defs"],
        world["manifest"],
        d,
        d,
        world["instance"],
        run_config=QUIET,
        selection='key:"rebalance_orders_total_portfolio_hrp"',
    )
    assert again.success
    orders = q(
        world,
        "SELECT * FROM rebalance_orders WHERE meta='total_portfolio' AND risk='hrp' AND rebalance_date='2019-03-29'",
    )
    assert len(orders) and (orders["implemented_as_of"] == pd.Timestamp("2019-01-04")).all()
    np.testing.assert_allclose(orders["drift"], orders["target"] - orders["implemented"], atol=1e-15)
    assert (orders.loc[orders["status"] == "SKIP", "drift"].abs() < 0.01).all()
    assert (orders.loc[orders["status"] == "EXECUTE", "drift"].abs() >= 0.01).all()
    path.unlink()


# --- the selection funnel, stage by stage -------------------------------------------------------


def test_every_funnel_stage_is_stored_and_recruitment_saw_exactly_it(world):
    from quant_assets.selection.funnel import STAGES

    sel = q(world, "SELECT * FROM selection")
    ranks = q(world, "SELECT rebalance_date, sleeve, symbol, rank AS stored_rank FROM rankings")
    merged = sel.merge(ranks, on=["rebalance_date", "sleeve", "symbol"], how="left")
    assert merged["stored_rank"].notna().all() and (merged["rank"] == merged["stored_rank"]).all()
    clusters = q(world, "SELECT rebalance_date, sleeve, symbol, cluster AS stored FROM clusters")
    merged = sel.merge(clusters, on=["rebalance_date", "sleeve", "symbol"], how="left")
    assert (merged["cluster"] == merged["stored"]).all()
    assert set(sel["selected_by"]) - {""} <= set(STAGES)
    assert (sel["selected"] == (sel["selected_by"] != "")).all()
    m = world["manifest"]
    k = sel[sel["selected"]].groupby(["sleeve", "rebalance_date"]).size()
    for (sleeve, _), n in k.items():
        s = m.sleeves[sleeve].selection
        assert s.min_winners <= n <= s.max_winners, sleeve
    assert k.index.get_level_values(0).value_counts().to_dict() == {s: 13 for s in m.sleeves}
    # atoms: SYMBOL|logic|direction with the direction's sign; never parsed back
    for r in sel[sel["selected"]].itertuples():
        cfg = m.sleeves[r.sleeve]
        assert r.atom_id == f"{r.symbol}|{cfg.logic}|{cfg.direction}"
        assert r.sign == (-1 if cfg.direction == "short" else 1)
    # the benchmark is priced and featured, but never clustered, ranked, vetoed or recruited
    assert q(world, "SELECT count(*) AS n FROM features WHERE symbol='INDEX:SP500'")["n"][0] == 2 * 13
    for table in ("clusters", "rankings", "vetoes", "selection"):
        assert q(world, f"SELECT count(*) AS n FROM {table} WHERE symbol='INDEX:SP500'")["n"][0] == 0, table


def test_duckdb_answers_why_a_symbol_was_not_selected(world):
    why = q(
        world,
        "SELECT s.sleeve, s.rebalance_date, s.symbol, s.veto_reason, v.filter, v.reason, v.value, "
        "v.threshold FROM selection s JOIN vetoes v USING (rebalance_date, sleeve, symbol) "
        "WHERE NOT s.selected ORDER BY ALL",
    )
    assert len(why) > 0
    assert set(why["filter"]) <= {"darwinian", "predictability", "trend_regime", "friction"}
    first = why.groupby(["sleeve", "rebalance_date", "symbol"]).first()
    assert (first["veto_reason"] != "").all()  # the selection row names a strict veto for every vetoed loser
    # a predictability veto is a number against its threshold, on the right side of it
    ent = why[why["reason"].str.contains("entropy")]
    assert len(ent) == 0 or (ent["value"] > ent["threshold"]).all()


def test_regime_is_read_per_universe_and_drives_the_cluster_threshold(world):
    reg = q(world, "SELECT universe, rebalance_date, label, score FROM regime")
    assert len(reg) == 2 * 13 and set(reg["label"]) <= {"QUIET", "NORMAL", "TURBULENT", "CRISIS"}
    assert np.isfinite(reg["score"]).all()
    clu = q(
        world,
        "SELECT DISTINCT c.sleeve, c.rebalance_date, c.threshold, c.regime, r.label FROM clusters c "
        "JOIN regime r ON r.rebalance_date = c.rebalance_date AND r.universe = 'us_large_caps' "
        "WHERE c.sleeve = 'trend_long'",
    )
    thresholds = world["manifest"].sleeves["trend_long"].selection.clustering.thresholds
    assert (clu["regime"] == clu["label"]).all()
    assert (clu["threshold"] == clu["regime"].map(thresholds)).all()
    sens = q(
        world,
        "SELECT rebalance_date, threshold, n_clusters FROM cluster_sensitivity WHERE sleeve='trend_long' "
        "ORDER BY rebalance_date, threshold",
    )
    for _, g in sens.groupby("rebalance_date"):  # more clusters at tighter cuts, never fewer
        assert (np.diff(g["n_clusters"].to_numpy()) <= 0).all() and len(g) == 17


# --- wealth carries over, the tournament scores every contender ----------------------------------


def _assert_wealth_compounds(frame: pd.DataFrame, keys: list[str]) -> None:
    for _, g in frame.sort_values("date").groupby(keys):
        w, r = g["wealth"].to_numpy(), g["net_return"].to_numpy()
        np.testing.assert_allclose(w[1:], w[:-1] * (1 + r[1:]), rtol=1e-12)  # across partition boundaries too
        assert w[0] == pytest.approx(1 + r[0], rel=1e-12)  # starts from 1.0 once, never reset


def test_sleeve_wealth_compounds_across_partitions(world):
    r = q(world, "SELECT sleeve, risk, rebalance_date, date, net_return, wealth, bankrupt FROM sleeve_returns")
    assert r["rebalance_date"].nunique() == 12 and not r["bankrupt"].any()
    _assert_wealth_compounds(r, ["sleeve", "risk"])


def test_tournament_scores_every_engine_and_profile(world):
    m = world["manifest"]
    w = q(
        world,
        "SELECT sleeve, rebalance_date, engine, profile, sum(weight) AS s, min(weight) AS lo "
        "FROM tournament_weights GROUP BY ALL",
    )
    np.testing.assert_allclose(w["s"], 1.0, atol=1e-9)
    assert (w["lo"] > 0).all()
    per_date = w[(w["sleeve"] == "trend_long")].groupby("rebalance_date").size()
    platform = {"market", "benchmark", "raw_pool_ew", "equal_weight"}
    expected = len(platform) + (len(m.tournament.profiles) - len(platform)) * len(m.tournament.engines)
    assert (per_date == expected).all()
    hrp = w[(w["profile"] == "hrp") & (w["engine"].isin(["custom", "skfolio"]))]
    assert len(hrp) == 2 * 4 * 13  # ward + optimal leaf order: custom and skfolio both run it
    r = q(world, "SELECT sleeve, engine, profile, rebalance_date, date, net_return, wealth FROM tournament_returns")
    _assert_wealth_compounds(r, ["sleeve", "engine", "profile"])
    # same variant, same winners -> custom and skfolio HRP earn the same stream
    pair = r[r["profile"] == "hrp"].pivot_table(index=["sleeve", "date"], columns="engine", values="net_return")
    np.testing.assert_allclose(pair["custom"], pair["skfolio"], atol=1e-12)
    event = [
        e
        for e in world["result"].get_asset_materialization_events()
        if e.asset_key.to_user_string() == "tournament_trend_long" and e.partition == "2019-03"
    ][0]
    md = event.materialization.metadata
    assert "| profile | engine | cagr |" in md["scoreboard"].value and "**" in md["scoreboard"].value
    assert md["equity_curves"].value.startswith("![") and md["drawdowns"].value.startswith("![")


def test_one_key_of_one_lens_rematerialises_alone_and_identically(world):
    """A meta step holds every lens of the meta; selecting one key of one lens (the UI's "materialise
    selected") computes that lens alone, reads the rest from the lakehouse, records exactly that
    key, and rewrites the same rows (idempotent)."""
    lh = world["lh"]
    before = lh.read("flattened_weights", "flattened_weights_us_stocks_min_variance")
    again = materialize_range(
        world["defs"],
        world["manifest"],
        START,
        END,
        world["instance"],
        run_config=QUIET,
        selection='key:"flattened_weights_us_stocks_min_variance"',
    )
    assert again.success
    mats = again.get_asset_materialization_events()
    assert {e.asset_key.to_user_string() for e in mats} == {"flattened_weights_us_stocks_min_variance"}
    assert sorted(e.partition for e in mats) == PARTITIONS
    after = lh.read("flattened_weights", "flattened_weights_us_stocks_min_variance")
    assert before.height > 0 and after.equals(before)


def test_a_one_partition_run_records_the_same_partition_metadata(world):
    """The weekly update materialises one partition: its materialisation carries the same facts of
    that partition (rows, dates, location, the asset's own) as the ranged run recorded for it."""
    ranged = {
        e.partition: e.materialization.metadata
        for e in world["result"].get_asset_materialization_events()
        if e.asset_key.to_user_string() == "selection_trend_long"
    }["2019-02"]
    single = materialize_range(
        world["defs"],
        world["manifest"],
        dt.date(2019, 2, 1),
        dt.date(2019, 2, 28),
        world["instance"],
        run_config=QUIET,
        selection='key:"selection_trend_long"',
    )
    assert single.success
    [mat] = single.get_asset_materialization_events()
    assert mat.partition == "2019-02"
    md = mat.materialization.metadata
    assert md["partitions_in_run"].value == 1 and ranged["partitions_in_run"].value == 3
    assert md["first_date"].value == "2019-02-01" and md["rebalance_dates"].value == 4
    assert md["dagster/row_count"].value == ranged["dagster/row_count"].value > 0
    # the partition's own facts; the run's (partitions_in_run, winners_by_stage) describe the run
    own = ["dagster/row_count", "dagster/uri", "first_date", "last_date", "rebalance_dates", "preview"]
    assert [md[k] for k in own] == [ranged[k] for k in own]
