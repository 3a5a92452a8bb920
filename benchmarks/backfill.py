"""How long does a walk-forward backfill of the default graph take, and where does the time go?

Runs the whole default graph over a date range as one single-run backfill, in process, into a
temporary lakehouse with an ephemeral Dagster instance, and reports wall time, seconds per
rebalance date, and the share of wall time spent inside our asset bodies (measured by timing each
asset's compute function) versus Dagster (planning, events, storage).

    .venv/bin/python benchmarks/backfill.py --start 2019-01-01 --end 2019-12-31
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import warnings
from collections import defaultdict

from dagster import DagsterInstance

warnings.filterwarnings("ignore")

TIMES: dict[str, float] = defaultdict(float)


def _instrument(defs) -> None:
    """Wrap every asset's compute function with a timer keyed by the asset's node name."""
    for assets_def in defs.assets:
        op = assets_def.op
        fn = op.compute_fn.decorated_fn

        def timed(*args, __fn=fn, __name=op.name, **kwargs):
            t0 = time.perf_counter()
            try:
                out = __fn(*args, **kwargs)
                if hasattr(out, "__next__"):  # generator bodies (multi-assets) run while iterated
                    out = list(out)
                return out
            finally:
                TIMES[__name] += time.perf_counter() - t0

        op.compute_fn._decorated_fn = timed  # noqa: SLF001 - benchmark-only instrumentation


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2019, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2019, 12, 31))
    args = parser.parse_args()

    from quant_assets.calendar import rebalance_dates
    from quant_assets.definitions import build_definitions
    from quant_assets.manifest import load_manifest
    from quant_assets.runner import materialize_range

    manifest = load_manifest()
    n_dates = len([d for d in rebalance_dates(manifest.calendar, args.end) if d >= args.start])
    with tempfile.TemporaryDirectory() as root:
        defs = build_definitions(manifest, root)
        _instrument(defs)
        t0 = time.perf_counter()
        result = materialize_range(defs, manifest, args.start, args.end, DagsterInstance.ephemeral(),
                                   run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        wall = time.perf_counter() - t0
    ours = sum(TIMES.values())
    by_kind: dict[str, float] = defaultdict(float)
    for name, secs in TIMES.items():
        kind = name.split("_us_")[0].split("_total_")[0]
        for prefix in ("candidates", "prices", "returns", "features", "selection", "sleeve_weights",
                       "sleeve_returns", "meta_returns", "optimise_meta", "meta_portfolio_returns",
                       "flattened_weights", "meta_report"):
            if name.startswith(prefix):
                kind = prefix
                break
        by_kind[kind] += secs
    print(f"backfill {args.start} .. {args.end}: {n_dates} rebalance dates, {len(TIMES)} steps, "
          f"success={result.success}")
    print(f"wall {wall:.1f} s = {wall / n_dates:.2f} s per date; inside asset bodies {ours:.1f} s "
          f"({ours / wall:.0%}), Dagster {wall - ours:.1f} s ({1 - ours / wall:.0%})")
    for kind, secs in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<24} {secs:6.1f} s  {secs / wall:5.1%}")


if __name__ == "__main__":
    main()
