"""How does the cost of a rebalance grow with the size of the universe?

Replaces the default manifest's stock universe with a synthetic one of N symbols (a seeded factor
model: four factors plus idiosyncratic noise, on the S&P 500 index's own sessions so the benchmark
aligns), keeps every default sleeve, lens and meta, and walks one year of weekly rebalances (2021,
one yearly partition, its 500-session warm-up included) through Dagster in process on an ephemeral
instance. Reports per N: seconds per rebalance date, the split by step kind (from Dagster's step
durations), and lakehouse bytes per rebalance date.

    .venv/bin/python -m benchmarks.scale                    # 20, 100 and 500 symbols
    .venv/bin/python -m benchmarks.scale --symbols 1500

What should hold: the sleeves optimise at most `max_winners` atoms whatever N is, so their cost is
flat; what grows is the per-symbol work (prices, returns, 22 features, health) linearly and the
funnel's correlation clustering quadratically (an N x N matrix per lookback and date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from quant_assets.config.manifest import default_manifest_path

REPO = Path(__file__).resolve().parents[1]
SEED = 7
FACTORS = 4

warnings.filterwarnings("ignore")


def factor_model_closes(n: int, sessions: pd.DatetimeIndex, seed: int = SEED) -> pd.DataFrame:
    """Daily closes of n symbols: r = B f + e, f ~ N(0, diag(1.0 %, 0.6 %, 0.5 %, 0.4 %)^2) with a
    market loading near 1, e ~ N(0, 1.2-2.5 %^2) per symbol, starting at 100."""
    rng = np.random.default_rng(seed)
    t = len(sessions)
    f = rng.normal(0.0, [0.010, 0.006, 0.005, 0.004], size=(t, FACTORS))
    loadings = np.column_stack([rng.normal(1.0, 0.25, n), rng.normal(0.0, 0.6, (n, FACTORS - 1))])
    idio = rng.normal(0.0, 1.0, (t, n)) * rng.uniform(0.012, 0.025, n)
    r = f @ loadings.T + idio + 0.0003
    closes = 100.0 * np.cumprod(1.0 + np.clip(r, -0.5, None), axis=0)
    return pd.DataFrame(closes, index=sessions, columns=[f"S{i:04d}" for i in range(n)])


def register_synthetic_source(n: int) -> str:
    """A price source named `synthetic_<n>` (the skfolio adapter over a generated frame)."""
    from skfolio.datasets import load_sp500_index

    from quant_assets.data.sources import SOURCES, _SkfolioFrameSource

    index = load_sp500_index()
    sessions = pd.DatetimeIndex(index.loc["2018-01-01":"2021-12-31"].index)
    frame = factor_model_closes(n, sessions)
    sectors = ["Energy", "Financials", "Health Care", "Industrials", "Information Technology"]
    name = f"synthetic_{n}"
    SOURCES[name] = type(
        f"Synthetic{n}Source",
        (_SkfolioFrameSource,),
        {
            "name": name,
            "reference": {t: ("SYN", "equity", sectors[i % len(sectors)]) for i, t in enumerate(frame.columns)},
            "_load": staticmethod(lambda: frame),
        },
    )
    return name


def manifest_for(source: str) -> dict:
    data = yaml.safe_load(default_manifest_path().read_text())
    data["universes"]["us_large_caps"]["source"] = source
    data["calendar"].update({"start": dt.date(2021, 1, 1), "end": dt.date(2022, 1, 1), "partition": "year"})
    return data


def step_kind(step_key: str) -> str:
    return step_key.split("_", 1)[0]  # universe, funnel, sleeve, meta, orders


def run_once(n: int) -> dict:
    from dagster import DagsterEventType

    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.config.manifest import load_manifest
    from quant_assets.data.calendars import Periods
    from quant_assets.definitions import build_definitions

    source = register_synthetic_source(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.yaml"
        path.write_text(yaml.safe_dump(manifest_for(source), sort_keys=False, default_flow_style=None))
        manifest = load_manifest(path)
        lakehouse = Path(tmp) / "lakehouse"
        defs = build_definitions(manifest, lakehouse)
        dates = Periods(manifest.calendar).all_dates
        t = time.perf_counter()
        result = materialize_range(
            defs,
            manifest,
            dates[0],
            dates[-1],
            ephemeral_instance(),
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        wall = time.perf_counter() - t
        by_kind: dict[str, float] = defaultdict(float)
        for event in result.all_events:
            if event.event_type == DagsterEventType.STEP_SUCCESS:
                by_kind[step_kind(event.step_key)] += event.event_specific_data.duration_ms / 1000
        files = [p for p in lakehouse.rglob("*.parquet")]
        size = sum(p.stat().st_size for p in files)
        prices = sum(p.stat().st_size for p in (lakehouse / "prices").rglob("*.parquet"))
    return {
        "n": n,
        "ok": result.success,
        "dates": len(dates),
        "wall": wall,
        "by_kind": dict(by_kind),
        "bytes": size,
        "price_bytes": prices,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, nargs="+", default=[20, 100, 500])
    args = parser.parse_args()
    print(
        f"{'symbols':>8} {'s/rebalance':>12} {'universe':>9} {'funnel':>8} {'sleeve':>8} {'meta':>8} "
        f"{'orders':>7} {'KB/rebalance':>13} {'of which prices':>16}"
    )
    for n in args.symbols:
        r = run_once(n)
        k, d = r["by_kind"], r["dates"]
        print(
            f"{n:>8} {r['wall'] / d:>12.3f} "
            + " ".join(
                f"{k.get(kind, 0.0) / d:>{w}.3f}"
                for kind, w in (("universe", 9), ("funnel", 8), ("sleeve", 8), ("meta", 8), ("orders", 7))
            )
            + f" {r['bytes'] / d / 1024:>13.1f} {r['price_bytes'] / d / 1024:>16.1f}"
            + ("" if r["ok"] else "   RUN FAILED"),
            flush=True,
        )
    print(
        "(seconds per rebalance date; step columns from Dagster's step durations; one year of weekly "
        "rebalances, 2021, in process on an ephemeral instance)"
    )


if __name__ == "__main__":
    main()
