"""skfolio engine: MeanRisk (CLARABEL) for min_variance / max_sharpe, RiskBudgeting for risk_parity,
HierarchicalRiskParity with an explicit seriation (linkage + leaf ordering) for hrp, and barbell on
its HRP core. Supports covariance "sample" and "ledoit_wolf" without extra shrinkage and no CVaR
penalty; anything else raises `UnsupportedProfile` (the chain records it and moves on).
"""

from __future__ import annotations

import warnings

import numpy as np

from quant_assets.allocation.engines.base import EngineOutput, EngineRequest, LibraryEngine

CONVEX = ("min_variance", "max_sharpe", "risk_parity")


class SkfolioEngine(LibraryEngine):
    name = "skfolio"
    convex = CONVEX
    profiles = frozenset({"min_variance", "max_sharpe", "hrp", "risk_parity", "barbell"})

    def _prior(self, request: EngineRequest):
        cfg = request.config
        if cfg.shrinkage > 0 or cfg.condition_number_max is not None:
            raise self.unsupported(request.profile, "correlation shrinkage is custom-engine only")
        if cfg.covariance == "sample":
            return None
        from skfolio.moments import LedoitWolf
        from skfolio.prior import EmpiricalPrior

        return EmpiricalPrior(covariance_estimator=LedoitWolf())

    def hrp(self, request: EngineRequest) -> EngineOutput:
        from skfolio import RiskMeasure
        from skfolio.cluster import HierarchicalClustering, LinkageMethod
        from skfolio.optimization import HierarchicalRiskParity
        from skfolio.seriation import HierarchicalSeriation

        cfg = request.config
        if cfg.hrp_distance != "pearson":
            raise self.unsupported("hrp", f"{cfg.hrp_distance} distances are custom-engine only")
        model = HierarchicalRiskParity(
            risk_measure=RiskMeasure.VARIANCE,
            prior_estimator=self._prior(request),
            seriation_estimator=HierarchicalSeriation(
                hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod(cfg.hrp_linkage)),
                optimal_ordering=cfg.hrp_leaf_order == "optimal",
            ),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(request.X)
        return EngineOutput(
            np.asarray(model.weights_, dtype=float),
            {
                "variant": f"{cfg.hrp_linkage}/{cfg.hrp_distance}/{cfg.hrp_leaf_order}",
                "solver": "skfolio.HierarchicalRiskParity",
            },
        )

    def solve_convex(self, request: EngineRequest) -> EngineOutput:
        p = request.profile
        from skfolio import RiskMeasure
        from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting

        prior = self._prior(request)
        if p == "min_variance":
            model = MeanRisk(
                objective_function=ObjectiveFunction.MINIMIZE_RISK,
                risk_measure=RiskMeasure.VARIANCE,
                prior_estimator=prior,
            )
        elif p == "max_sharpe":
            model = MeanRisk(
                objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
                risk_measure=RiskMeasure.VARIANCE,
                prior_estimator=prior,
            )
        else:
            model = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Percent units: Clarabel's tolerances are absolute and daily variances (~1e-4) sit at
            # them (min-variance came out 0.80018 instead of 0.8). Every profile here is
            # scale-invariant with a zero risk-free rate, so the weights are unchanged.
            model.fit(request.X * 100.0)
        return EngineOutput(
            np.asarray(model.weights_, dtype=float), {"variant": type(model).__name__, "solver": "CLARABEL"}
        )
