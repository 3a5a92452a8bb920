"""riskfolio-lib engine: HCPortfolio HRP (pearson codependence, MV, explicit linkage and leaf order),
Portfolio Classic MV MinRisk / Sharpe (l=0) and rp_optimization (ERC), CLARABEL, and barbell on its
HRP core. Convex profiles get the platform's covariance (any estimator/shrinkage); HRP computes its
own sample covariance, so other estimators raise `UnsupportedProfile` there. No CVaR penalty.
riskfolio returns all-NaN weights or None silently on bad input: `optimise` checks every answer.
"""

from __future__ import annotations

import warnings

import pandas as pd

from quant_assets.allocation.engines.base import EngineOutput, EngineRequest, LibraryEngine


class RiskfolioEngine(LibraryEngine):
    name = "riskfolio"
    convex = ("min_variance", "max_sharpe", "risk_parity")
    profiles = frozenset({"min_variance", "max_sharpe", "hrp", "risk_parity", "barbell"})

    def hrp(self, request: EngineRequest) -> EngineOutput:
        import riskfolio as rp

        cfg = request.config
        if cfg.hrp_distance != "pearson":
            raise self.unsupported("hrp", f"{cfg.hrp_distance} distances are custom-engine only")
        if cfg.covariance != "sample" or cfg.shrinkage > 0 or cfg.condition_number_max is not None:
            raise self.unsupported("hrp", "riskfolio HRP uses the sample covariance only")
        cols = [str(i) for i in range(request.n)]
        port = rp.HCPortfolio(returns=pd.DataFrame(request.X, columns=cols))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = port.optimization(
                model="HRP",
                codependence="pearson",
                rm="MV",
                rf=0,
                linkage=cfg.hrp_linkage,
                leaf_order=cfg.hrp_leaf_order == "optimal",
            )
        if w is None:
            raise ValueError("riskfolio HRP returned no weights")
        return EngineOutput(
            w["weights"].reindex(cols).to_numpy(dtype=float),
            {
                "variant": f"{cfg.hrp_linkage}/{cfg.hrp_distance}/{cfg.hrp_leaf_order}",
                "solver": "riskfolio.HCPortfolio",
            },
        )

    def solve_convex(self, request: EngineRequest) -> EngineOutput:
        import riskfolio as rp

        p = request.profile
        if p == "max_sharpe" and not (request.mu() > 0).any():
            # riskfolio silently returns a negative-Sharpe portfolio here; refuse like skfolio/pypfopt do
            raise ValueError("riskfolio max_sharpe: no asset has an expected return above the risk-free rate 0")
        cols = [str(i) for i in range(request.n)]
        port = rp.Portfolio(returns=pd.DataFrame(request.X * 100.0, columns=cols))  # percent units, see skfolio
        port.solvers = ["CLARABEL"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            port.assets_stats(method_mu="hist", method_cov="hist")
            port.cov = pd.DataFrame(request.cov() * 1e4, index=cols, columns=cols)
            if p == "risk_parity":
                w = port.rp_optimization(model="Classic", rm="MV", rf=0, b=None, hist=True)
            else:
                w = port.optimization(
                    model="Classic", rm="MV", obj="MinRisk" if p == "min_variance" else "Sharpe", rf=0, l=0, hist=True
                )
        if w is None:
            raise ValueError(f"riskfolio {p} returned no weights (solver failure)")
        return EngineOutput(
            w["weights"].reindex(cols).to_numpy(dtype=float), {"variant": "Classic/MV", "solver": "CLARABEL"}
        )
