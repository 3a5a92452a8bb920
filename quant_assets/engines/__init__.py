"""Optimiser backends behind one interface (see base.py); `quant_assets.optimise` is the entry point."""

from quant_assets.engines.base import Engine, EngineOutput, EngineRequest, UnsupportedProfile
from quant_assets.engines.custom import CustomEngine
from quant_assets.engines.pyportfolioopt import PyPortfolioOptEngine
from quant_assets.engines.riskfolio import RiskfolioEngine
from quant_assets.engines.skfolio import SkfolioEngine

__all__ = ["CustomEngine", "Engine", "EngineOutput", "EngineRequest", "PyPortfolioOptEngine", "RiskfolioEngine",
           "SkfolioEngine", "UnsupportedProfile"]
