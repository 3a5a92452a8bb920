"""How long does compute_features take on a realistic and a large universe?

Synthetic 500 symbols x 2,520 days (fixed seed, fat-tailed returns) and the bundled skfolio
S&P 500 (20 symbols x 8,312 days); median of 3 runs each, printed as a table.

    .venv/bin/python -m benchmarks.features
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pandas as pd

from quant_assets.selection.features import compute_features

warnings.filterwarnings("ignore")


def _median_seconds(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(2024)
    synth = pd.DataFrame(
        rng.standard_t(4, (2520, 500)) * 0.01 / np.sqrt(2.0),
        index=pd.bdate_range("2010-01-01", periods=2520),
        columns=[f"S{i:03d}" for i in range(500)],
    )
    from skfolio.datasets import load_sp500_dataset

    sp500 = load_sp500_dataset().pct_change().iloc[1:]
    vt = pd.Series(1e8, index=synth.columns)

    cases = [
        ("synthetic", synth, {}),
        ("synthetic + value_traded", synth, {"value_traded": vt}),
        ("skfolio S&P 500", sp500, {}),
    ]
    rows = []
    compute_features(synth.iloc[:300, :5])  # warm imports (scipy.signal, statsmodels)
    for name, frame, kw in cases:
        secs = _median_seconds(lambda f=frame, k=kw: compute_features(f, window=120, **k))
        rows.append((name, frame.shape[1], frame.shape[0], secs))

    print(f"{'case':<28}{'symbols':>8}{'days':>7}{'median s (3 runs)':>20}")
    for name, m, n, secs in rows:
        print(f"{name:<28}{m:>8}{n:>7}{secs:>20.3f}")


if __name__ == "__main__":
    main()
