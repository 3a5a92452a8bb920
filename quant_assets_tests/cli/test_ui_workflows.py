"""The users' three workflows in a real browser: materialise, backfill by date, inspect lineage.

Starts the UI the way the README says (`python -m quant_assets.cli.devserver`, bound to 127.0.0.1) on
a temporary instance and lakehouse, drives Debian's Chromium with Playwright, and saves a
screenshot of every step under `test-artifacts/ui/` for review. Skipped, with the reason, when
Chromium or Playwright is not installed (`.ci/run` installs Chromium).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
PORT = int(os.environ.get("QUANT_ASSETS_UI_TEST_PORT", "3393"))
URL = f"http://127.0.0.1:{PORT}"
ROOT_FLAT = "flattened_weights_total_portfolio_hrp"

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"UI tests need Chromium at {CHROMIUM} (apt-get install chromium); skipped"
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="UI tests need playwright (make env)")


def _graphql(query: str, variables: dict | None = None) -> dict:
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=PORT)._execute(query, variables or {})


def _wait_loaded(proc: subprocess.Popen, timeout: float = 90) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}")
        try:
            urllib.request.urlopen(URL, timeout=2)
            entries = _graphql(query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise TimeoutError(f"the UI at {URL} did not load within {timeout} s")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    home, lakehouse = tmp_path_factory.mktemp("dagster_home"), tmp_path_factory.mktemp("lakehouse")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_LAKEHOUSE": str(lakehouse),
        "QUANT_ASSETS_UI_PORT": str(PORT),
    }
    log = open(tmp_path_factory.mktemp("logs") / "dagster_dev.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "quant_assets.cli.devserver"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_loaded(proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            yield {"page": page, "home": home, "lakehouse": lakehouse, "env": env}
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_for_runs(started_after: float, timeout: float = 300) -> list[dict]:
    """Wait until every run created after `started_after` has finished; return them."""
    query = "{ runsOrError(limit: 50) { ... on Runs { results { runId status creationTime } } } }"
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = [r for r in _graphql(query)["runsOrError"]["results"] if r["creationTime"] >= started_after]
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        time.sleep(3)
    raise TimeoutError(f"runs did not finish within {timeout} s")


def failures(runs: list[dict]) -> str:
    """The step failures of the runs that did not succeed: what an assertion should show."""
    query = (
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection { events { "
        "... on ExecutionStepFailureEvent { stepKey error { message causes { message } } } } } } } }"
    )
    out = []
    for r in runs:
        if r["status"] != "SUCCESS":
            events = _graphql(query, {"id": r["runId"]})["runOrError"]["eventConnection"]["events"]
            out += [
                f"{e['stepKey']}: {(e['error']['causes'] or [e['error']])[-1]['message'][:300]}"
                for e in events
                if e.get("stepKey") and e.get("error")
            ]
    return "; ".join(out)


def open_lineage_selection(page, selection: str) -> None:
    page.goto(f"{URL}/asset-groups~{quote(selection)}/")
    page.locator("button", has_text="Materialize all").first.wait_for()
    page.wait_for_timeout(1500)  # the graph lays out after the data arrives


def launch_from_dialog(page, partitions: str) -> str:
    """Materialize all -> (confirm the multi-asset note) -> pick partitions -> launch; returns the label."""
    page.locator("button", has_text="Materialize all").first.click()
    dialog = page.get_by_role("dialog").last
    dialog.wait_for()
    if dialog.get_by_role("button", name="Confirm").count():
        dialog.get_by_role("button", name="Confirm").click()  # the meta step also writes its cluster tree
        dialog = page.get_by_role("dialog").last
    box = dialog.get_by_placeholder("ex: 1992", exact=False)
    box.fill(partitions)
    box.press("Enter")
    launch = dialog.locator("button", has_text="Launch").last
    playwright_api.expect(launch).to_be_enabled()
    return launch.inner_text()


def test_1_materialise_one_partition_with_upstream(ui):
    page = ui["page"]
    t0 = time.time()
    open_lineage_selection(page, f'+key:"{ROOT_FLAT}"')
    shot(page, "1a_upstream_of_root_flattened_weights")
    assert launch_from_dialog(page, "1992") == "Launch 1 run"  # the first year: its own warm-up history
    shot(page, "1b_launch_dialog_one_partition")
    page.get_by_role("dialog").last.locator("button", has_text="Launch").last.click()
    runs = wait_for_runs(t0)
    assert [r["status"] for r in runs] == ["SUCCESS"]
    page.goto(f"{URL}/assets/{ROOT_FLAT}?view=partitions")
    playwright_api.expect(page.get_by_text("Materialized (1)", exact=False).first).to_be_visible()
    page.goto(f"{URL}/assets/{ROOT_FLAT}")
    for text in ("Latest materialization", "1992", "preview", "gross_exposure_last_date", "rebalance_dates"):
        playwright_api.expect(page.get_by_text(text, exact=False).first).to_be_visible()
    shot(page, "1c_root_flattened_weights_asset_page")
    print(f"workflow 1 (materialise one partition with upstream): {time.time() - t0:.1f} s")


def test_2_backfill_a_date_range_of_the_meta_group(ui):
    page = ui["page"]
    # Upstream of the meta group exists for 1992-1994 (a user would have backfilled it earlier).
    from dagster import DagsterInstance

    env = ui["env"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "quant_assets.cli.main",
            "backfill",
            "--start",
            "1992-01-01",
            "--end",
            "1994-12-31",
            "--select",
            "group:market_data or group:selection or group:sleeves",
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    t0 = time.time()
    open_lineage_selection(page, "group:meta")
    shot(page, "2a_meta_group")
    assert launch_from_dialog(page, "[1993...1994]") == "Launch backfill"
    shot(page, "2b_backfill_dialog_1993_1994")
    page.get_by_role("dialog").last.locator("button", has_text="Launch").last.click()
    runs = wait_for_runs(t0, timeout=420)
    assert runs and all(r["status"] == "SUCCESS" for r in runs), failures(runs)
    page.goto(f"{URL}/assets/meta_weights_us_stocks_hrp?view=partitions")
    playwright_api.expect(page.get_by_text("Materialized (3)", exact=False).first).to_be_visible()  # + 1992 (test 1)
    shot(page, "2c_meta_weights_partitions_materialised")
    from dagster import AssetKey

    os.environ["DAGSTER_HOME"] = str(ui["home"])  # the instance's event log lives under it
    try:
        with DagsterInstance.from_config(str(ui["home"])) as instance:
            done = instance.get_materialized_partitions(AssetKey("meta_weights_us_stocks_hrp"))
    finally:
        os.environ.pop("DAGSTER_HOME", None)
    assert {"1993", "1994"} <= done
    print(
        f"workflow 2 (backfill two yearly partitions, 104 rebalance dates, of the meta group): {time.time() - t0:.1f} s"
    )


def test_3_lineage_of_a_flattened_weight_reaches_sleeve_returns_and_prices(ui):
    page = ui["page"]
    t0 = time.time()
    page.goto(f"{URL}/assets/{ROOT_FLAT}?view=lineage&lineageScope=upstream")
    page.get_by_role("button", name="All", exact=True).click()  # graph depth: everything upstream
    page.wait_for_timeout(3000)
    shot(page, "3a_asset_lineage_tab_upstream_all")
    open_lineage_selection(page, f'+key:"{ROOT_FLAT}"')
    # The sidebar tree is virtualised: expand one group at a time, check its nodes, fold it again.
    upstream = {
        "meta": ["meta_weights_total_portfolio_hrp", "meta_returns_us_stocks_hrp"],
        "sleeves": [
            "sleeve_returns_trend_long_hrp",
            "sleeve_returns_trend_short_hrp",
            "sleeve_weights_trend_short_hrp",
        ],
        "selection": [
            "selection_trend_long",
            "vetoes_trend_long",
            "rankings_trend_long",
            "clusters_trend_long",
            "regime_us_large_caps",
        ],
        "market_data": ["prices_us_large_caps", "prices_us_factor_etfs"],
    }
    for group, nodes in upstream.items():
        page.locator("button", has_text=group).first.click()
        page.keyboard.press("ArrowRight")  # expand the group in the sidebar tree
        for node in nodes:
            playwright_api.expect(page.get_by_text(node, exact=True).first).to_be_attached()
        if group == "selection":
            shot(page, "3b_upstream_lineage_selection_funnel")
        page.keyboard.press("ArrowLeft")
    assert page.get_by_text("meta_report_total_portfolio_hrp", exact=True).count() == 0  # downstream: not shown
    print(f"workflow 3 (lineage of a flattened weight): {time.time() - t0:.1f} s")


def test_4_funnel_plots_render_on_the_asset_pages(ui):
    """The regime timeline and the threshold-sensitivity picture of a partition of workflow 2, in the UI."""
    page = ui["page"]
    for asset, key, name in (
        ("regime_us_large_caps", "timeline", "4a_regime_timeline"),
        ("cluster_sensitivity_trend_long", "sensitivity", "4b_cluster_sensitivity"),
    ):
        page.goto(f"{URL}/assets/{asset}")
        # the metadata row named exactly `key` (definition metadata such as `lakehouse_table:
        # cluster_sensitivity` also contains the word)
        row = page.locator("tr", has=page.get_by_text(key, exact=True)).last
        row.wait_for()
        row.scroll_into_view_if_needed()
        inline = row.locator('img[src^="data:image/png;base64,"]')
        if inline.count():  # short markdown renders in the table itself
            image, dialog = inline.first, False
        else:  # longer markdown opens from "[Show Markdown]"
            row.locator("a", has_text="Show Markdown").first.click()
            image, dialog = page.get_by_role("dialog").last.locator('img[src^="data:image/png;base64,"]').first, True
        playwright_api.expect(image).to_be_visible()
        assert image.evaluate("img => img.naturalWidth") > 100  # decoded, not a broken-image icon
        page.wait_for_timeout(800)  # let a dialog finish fading in before the screenshot
        shot(page, name)
        if dialog:
            page.get_by_role("button", name="Close").click()
    page.goto(f"{URL}/assets/vetoes_trend_long")
    playwright_api.expect(page.get_by_text("vetoes_per_filter", exact=True).first).to_be_visible()
    playwright_api.expect(page.get_by_text('"predictability"', exact=False).first).to_be_attached()
