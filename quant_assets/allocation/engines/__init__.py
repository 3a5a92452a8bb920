"""Optimiser backends behind one interface (see base.py); `quant_assets.allocation.optimise` is the entry point."""

from quant_assets.allocation.engines.base import Engine, EngineOutput, EngineRequest, UnsupportedProfile
from quant_assets.allocation.engines.custom import CustomEngine
from quant_assets.allocation.engines.pyportfolioopt import PyPortfolioOptEngine
from quant_assets.allocation.engines.riskfolio import RiskfolioEngine
from quant_assets.allocation.engines.skfolio import SkfolioEngine

__all__ = [
    "CustomEngine",
    "Engine",
    "EngineOutput",
    "EngineRequest",
    "PyPortfolioOptEngine",
    "RiskfolioEngine",
    "SkfolioEngine",
    "UnsupportedProfile",
]
