"""Is this checkout's full history less work than another's? Both run at the same time, so both see
the machine in the same state.

This machine's speed drifts by up to 30 % within minutes, so two full-history runs one after the
other (`benchmarks.backfill`, 55-75 s for the same code) cannot show a 5 % change, even
interleaved. Here each pair runs both checkouts concurrently, each in one process
(`QUANT_ASSETS_WORKERS=1`: no forked workers, so each holds one of the two cores), with this
checkout's `benchmarks/backfill.py` measuring both, and compares their CPU time (user + kernel) in
the same pair: a ratio under 1 means this checkout does less work. What it cannot show is
anything that depends on the workers (forks, the overlap of a step with its workers): time that
with `benchmarks.backfill`.

    git worktree add /tmp/base <revision>             # the checkout to compare against
    .venv/bin/python -m benchmarks.compare /tmp/base --pairs 3
    .venv/bin/python -m benchmarks.compare /tmp/base --start 2019-01-01 --end 2022-12-31
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
CPU = re.compile(r"CPU: steps' process ([\d.]+) s user \+ ([\d.]+) s kernel")
WALL = re.compile(r"^wall ([\d.]+) s", re.M)


def _launch(checkout: Path, args: list[str], log: IO[str]) -> subprocess.Popen:
    """`benchmarks.backfill` of this checkout run on `checkout`'s package, in one process, its output
    to `log` (a file: a pipe left unread while the other run goes on could fill and stall it)."""
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(checkout)!r}); import quant_assets; "
        f"assert quant_assets.__file__.startswith({str(checkout)!r}), quant_assets.__file__; "
        f"sys.argv = ['backfill', *{args!r}]; "
        f"runpy.run_path({str(REPO / 'benchmarks' / 'backfill.py')!r}, run_name='__main__')"
    )
    env = {**os.environ, "QUANT_ASSETS_WORKERS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both processes compile their bytecode once
    return subprocess.Popen([sys.executable, "-c", code], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)


def _figures(name: str, out: str) -> tuple[float, float]:
    """(wall seconds, core-seconds) from a backfill's output; its tail when it printed none."""
    cpu, wall = CPU.search(out), WALL.search(out)
    if cpu is None or wall is None:
        tail = "\n".join(out.splitlines()[-15:])
        raise SystemExit(f"{name}: the backfill printed no timing; its last lines:\n{tail}")
    return float(wall.group(1)), float(cpu.group(1)) + float(cpu.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="the checkout to compare against (a git worktree of another revision)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--start", default="1992-01-01")
    parser.add_argument("--end", default="2022-12-31")
    opts = parser.parse_args()
    base = opts.base.resolve()
    if not (base / "quant_assets" / "__init__.py").is_file():
        raise SystemExit(f"{base}: not a checkout of this repository (no quant_assets/__init__.py)")
    args = ["--start", opts.start, "--end", opts.end]
    ratios = []
    print(f"this checkout {REPO} against {base}, {opts.start} .. {opts.end}, one process each, run concurrently")
    for i in range(1, opts.pairs + 1):
        order = [("this", REPO), ("base", base)] if i % 2 else [("base", base), ("this", REPO)]  # who starts first
        with tempfile.TemporaryDirectory() as tmp:
            logs = {name: open(Path(tmp) / f"{name}.log", "w+") for name, _ in order}  # noqa: SIM115 (closed below)
            procs = {name: _launch(checkout, args, logs[name]) for name, checkout in order}
            try:
                for p in procs.values():
                    p.wait()
            finally:  # Ctrl-C or a failure leaves no run behind
                for p in procs.values():
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            outs = {}
            for name, log in logs.items():
                log.seek(0)
                outs[name] = log.read()
                log.close()
        (w_this, c_this), (w_base, c_base) = _figures("this", outs["this"]), _figures("base", outs["base"])
        ratios.append(c_this / c_base)
        print(
            f"pair {i}: this {c_this:.1f} core-seconds ({w_this:.1f} s), base {c_base:.1f} ({w_base:.1f} s): "
            f"ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"core-seconds ratio this/base: {min(ratios):.3f} .. {max(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
