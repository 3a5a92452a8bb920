"""Walk-forward HRP: the product's path against skfolio's, same folds, one run.

    .venv/bin/python -m benchmarks.walk_forward

skfolio: `cross_val_predict(HierarchicalRiskParity(), X, cv=WalkForward(train_size=252, test_size=10))`
on the bundled 20-stock S&P 500 returns (806 folds). Ours: `optimise(X.iloc[train], "hrp",
engine="custom", config=<ward + Pearson + optimal leaf ordering>)` over the same folds, i.e. skfolio's
default variant. Prints fits/s for both, the ratio and max |dw| over every fold (the acceptance bar
is ratio >= 10 with max |dw| <= 1e-12). Timings are wall-clock on whatever else the machine runs,
but both sides run back to back in one process.
"""

from __future__ import annotations

import time
import warnings

import numpy as np


def main() -> dict[str, float]:
    from skfolio.datasets import load_sp500_dataset
    from skfolio.model_selection import WalkForward, cross_val_predict
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.preprocessing import prices_to_returns

    from quant_assets.allocation.optimise import RiskConfig, optimise

    X = prices_to_returns(load_sp500_dataset())
    cv = WalkForward(train_size=252, test_size=10)
    folds = [train for train, _ in cv.split(X)]
    config = RiskConfig(hrp_linkage="ward", hrp_distance="pearson", hrp_leaf_order="optimal")
    optimise(X.iloc[folds[0]], "hrp", engine="custom", config=config)  # warm imports

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        pred = cross_val_predict(HierarchicalRiskParity(), X, cv=cv)
        t_sk = time.perf_counter() - t0
    ref = np.array([p.weights for p in pred.portfolios])

    t0 = time.perf_counter()
    ours = [optimise(X.iloc[train], "hrp", engine="custom", config=config).weights for train in folds]
    t_ours = time.perf_counter() - t0
    ours = np.array([w.to_numpy() for w in ours])

    n = len(folds)
    out = {
        "folds": n,
        "skfolio_s": t_sk,
        "ours_s": t_ours,
        "skfolio_fits_per_s": n / t_sk,
        "ours_fits_per_s": n / t_ours,
        "ratio": t_sk / t_ours,
        "max_abs_dw": float(np.abs(ours - ref).max()),
    }
    print(f"data {X.shape[0]}x{X.shape[1]}, WalkForward(train_size=252, test_size=10): {n} folds")
    print(f"skfolio cross_val_predict(HierarchicalRiskParity()): {t_sk:.2f} s = {n / t_sk:.0f} fits/s")
    print(f"quant_assets optimise(hrp, custom, ward/pearson/optimal): {t_ours:.2f} s = {n / t_ours:.0f} fits/s")
    print(f"ratio {t_sk / t_ours:.1f}x, max |dw| over all folds {out['max_abs_dw']:.2e}")
    return out


if __name__ == "__main__":
    main()
