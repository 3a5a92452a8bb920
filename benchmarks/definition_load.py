"""How long does the code location take to load at scale?

Generates a manifest with N sleeves (default 100) x the 5 default risk lenses, grouped ten to a
meta under one root meta (so metas nest two deep), and loads the code location from it in a fresh
Python process, as `dagster dev` and `dg check defs` do. Reports, for that process:

- libraries: importing what the code location needs (dagster, duckdb, numpy, pandas, polars,
  pydantic), a fixed cost;
- build: `import quant_assets.definitions` (our modules, manifest validation, `build_definitions`)
  and resolving the repository (every asset, check and job Dagster derives from it), the part that
  grows with the manifest;
- keys: the number of asset keys and checks generated.

    .venv/bin/python -m benchmarks.definition_load              # 100 sleeves x 5 lenses
    .venv/bin/python -m benchmarks.definition_load --sleeves 4  # about the default manifest's size

Target: the load (import + build) of 100 sleeves x 5 lenses within 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from quant_assets.config.manifest import default_manifest_path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = default_manifest_path()
TARGET_SECONDS = 3.0

# Runs in the fresh process: times the import and the build separately, prints one JSON line.
PROBE = """
import json, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import dagster, duckdb, numpy, pandas, polars, pydantic  # the libraries the code location needs
t1 = time.perf_counter()
import quant_assets.definitions as d  # validates the manifest and builds the graph
repo = d.defs.get_repository_def()  # every asset, check and job Dagster derives from it
keys = len(repo.asset_graph.get_all_asset_keys())
checks = len(repo.asset_graph.asset_check_keys)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "keys": keys, "checks": checks}))
"""


def generated_manifest(n_sleeves: int, per_meta: int = 10) -> dict:
    """The default manifest's universes and calendar, with n sleeves cycling through the default ones."""
    base = yaml.safe_load(DEFAULT_MANIFEST.read_text())
    templates = list(base["sleeves"].values())
    sleeves = {f"sleeve_{i:03d}": dict(templates[i % len(templates)]) for i in range(n_sleeves)}
    names = list(sleeves)
    groups = [names[i : i + per_meta] for i in range(0, n_sleeves, per_meta)]
    metas = {
        f"group_{g:02d}": {
            "children": [f"sleeve:{s}" for s in group],
            "allocation": {"engine": "custom", "profile": "hrp"},
        }
        for g, group in enumerate(groups)
    }
    if len(metas) > 1:
        metas["root"] = {"children": [f"meta:{m}" for m in metas], "allocation": {"engine": "custom", "profile": "hrp"}}
    base["sleeves"], base["metas"] = sleeves, metas
    return base


def load_once(manifest_path: Path, lakehouse: Path) -> dict:
    env = {
        **os.environ,
        "QUANT_ASSETS_MANIFEST": str(manifest_path),
        "QUANT_ASSETS_LAKEHOUSE": str(lakehouse),
        "PYTHONWARNINGS": "ignore",
    }
    env.setdefault("DAGSTER_HOME", str(lakehouse))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleeves", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes; the best is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.yaml"
        path.write_text(yaml.safe_dump(generated_manifest(args.sleeves), sort_keys=False))
        runs = [load_once(path, Path(tmp)) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["import"] + r["build"])
    total = best["import"] + best["build"]
    print(f"{args.sleeves} sleeves x 5 lenses: {best['keys']} asset keys, {best['checks']} checks")
    print(
        f"  libraries {best['import']:.2f} s + build {best['build']:.2f} s = {total:.2f} s "
        f"(best of {args.repeats} fresh processes; target {TARGET_SECONDS:.0f} s: "
        f"{'met' if total <= TARGET_SECONDS else 'missed'})"
    )


if __name__ == "__main__":
    main()
