"""PyPortfolioOpt engine: EfficientFrontier with solver="CLARABEL" (its default lets cvxpy pick OSQP,
which is 1.3e-2 off at 100 assets and fails max_sharpe at 500), HRPOpt for
hrp, and barbell on that HRP core.

Deterministic refusals (`UnsupportedProfile`, the chain moves on): HRPOpt has plain leaf ordering
only, so an "optimal" variant raises rather than silently returning a different variant; there is no
ERC (risk_parity) and no CVaR penalty. pypfopt can return NaN or partial weights silently; `optimise`
checks every answer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from quant_assets.allocation.engines.base import EngineOutput, EngineRequest, LibraryEngine


class PyPortfolioOptEngine(LibraryEngine):
    name = "pyportfolioopt"
    convex = ("min_variance", "max_sharpe")
    profiles = frozenset({"min_variance", "max_sharpe", "hrp", "barbell"})

    def hrp(self, request: EngineRequest) -> EngineOutput:
        from pypfopt import HRPOpt

        cfg = request.config
        if cfg.hrp_distance != "pearson":
            raise self.unsupported("hrp", f"{cfg.hrp_distance} distances are custom-engine only")
        if cfg.hrp_leaf_order != "plain":
            raise self.unsupported("hrp", "PyPortfolioOpt HRP has plain leaf ordering only")
        if cfg.covariance != "sample" or cfg.shrinkage > 0 or cfg.condition_number_max is not None:
            raise self.unsupported("hrp", "PyPortfolioOpt HRP uses the sample covariance only")
        cols = [str(i) for i in range(request.n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = HRPOpt(returns=pd.DataFrame(request.X, columns=cols)).optimize(linkage_method=cfg.hrp_linkage)
        return EngineOutput(
            pd.Series(w).reindex(cols).to_numpy(dtype=float),
            {"variant": f"{cfg.hrp_linkage}/{cfg.hrp_distance}/plain", "solver": "pypfopt.HRPOpt"},
        )

    def solve_convex(self, request: EngineRequest) -> EngineOutput:
        from pypfopt import EfficientFrontier

        p = request.profile
        cov = request.cov()
        scale = float(np.mean(np.diag(cov)))  # unit mean variance: same argmin/argmax, solver-friendly
        cols = [str(i) for i in range(request.n)]
        mu = pd.Series(request.mu() / np.sqrt(scale), index=cols)
        S = pd.DataFrame(cov / scale, index=cols, columns=cols)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ef = EfficientFrontier(mu, S, weight_bounds=(0, 1), solver="CLARABEL")
            w = ef.min_volatility() if p == "min_variance" else ef.max_sharpe(risk_free_rate=0.0)
        return EngineOutput(
            pd.Series(w).reindex(cols).to_numpy(dtype=float), {"variant": "EfficientFrontier", "solver": "CLARABEL"}
        )
