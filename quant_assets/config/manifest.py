"""The manifest: one YAML file that declares universes, sleeves, metas and the rebalance calendar.

Everything the asset graph contains is generated from it at definition-load time, so every
error here (unknown reference, cycle, nesting too deep, infeasible bounds) is raised before
Dagster ever sees a graph, and names the field and the value at fault.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from quant_assets.allocation.optimise import ENGINES as ENGINE_REGISTRY
from quant_assets.allocation.optimise import PROFILES, RiskConfig
from quant_assets.data.calendars import MAX_SESSIONS, Calendar
from quant_assets.data.health import HealthPolicy
from quant_assets.data.sessions import DEFAULT_CALENDAR, TradingCalendar, check_calendar_name
from quant_assets.selection.funnel import SelectionSettings
from quant_assets.selection.regime import RegimeSettings

MANIFEST_ENV_VAR = "QUANT_ASSETS_MANIFEST"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
RISK_PROFILES = PROFILES  # every profile a sleeve may build (optimise.FALLBACK_CHAINS)
# What a sleeve builds when its manifest entry says nothing: the investable lenses. The baselines
# (market, benchmark, raw_pool_ew) are opt-in per sleeve and always scored by the tournament.
DEFAULT_SLEEVE_PROFILES = ("equal_weight", "min_variance", "hrp", "max_sharpe", "barbell")
ALLOCATION_PROFILES = ("equal_weight", "min_variance", "hrp", "max_sharpe", "risk_parity")


def _known_engine(cls, v: str) -> str:
    """Shared by every model with an `engine` field (sleeves and meta allocations): the live registry."""
    if v not in ENGINE_REGISTRY:
        raise ValueError(f"unknown engine {v!r}; known: {', '.join(ENGINE_REGISTRY)}")
    return v


class ManifestError(ValueError):
    """A manifest that cannot become an asset graph. The message names the field and value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lookbacks(_Strict):
    """Trailing windows, in trading days (rows of the returns matrix)."""

    prices_days: int = Field(
        500, ge=20, le=MAX_SESSIONS, description="sessions of price history a rebalance date's window sees"
    )
    min_history_days: int = Field(252, ge=2, le=MAX_SESSIONS, description="floor below which a symbol is excluded")
    features_days: int = Field(120, ge=10, le=MAX_SESSIONS)
    optimisation_days: int = Field(252, ge=10, le=MAX_SESSIONS)
    meta_window_days: int = Field(252, ge=10, le=MAX_SESSIONS)
    meta_min_history_days: int = Field(
        60, ge=2, le=MAX_SESSIONS, description="below this a meta falls back to equal weight"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Lookbacks:
        if self.min_history_days > self.prices_days:
            raise ValueError(
                f"lookbacks.min_history_days ({self.min_history_days}) exceeds "
                f"lookbacks.prices_days ({self.prices_days})"
            )
        if self.meta_min_history_days > self.meta_window_days:
            raise ValueError(
                f"lookbacks.meta_min_history_days ({self.meta_min_history_days}) exceeds "
                f"lookbacks.meta_window_days ({self.meta_window_days})"
            )
        return self


class Friction(_Strict):
    slippage_bps: float = Field(ge=0)
    commission_bps: float = Field(ge=0)

    @property
    def rate(self) -> float:
        return (self.slippage_bps + self.commission_bps) / 1e4


class FilesSourceConfig(_Strict):
    """A folder of CSV/Parquet daily bars (see data/files.py for the layouts and the checks)."""

    kind: Literal["files"] = "files"
    path: str = Field(description="the folder; relative paths are relative to the manifest file")
    exchange: str = Field("FILE", description="exchange prefix of tickers without one (symbols.csv may say)")
    asset_type: str = Field("equity", description="asset type of tickers symbols.csv does not describe")


class _ConnectorSourceConfig(_Strict):
    """What every live connector source shares: its ingest store (see data/connectors/store.py)."""

    top_n: int | None = Field(
        None,
        ge=1,
        description="members per rebalance date, ranked by mean value traded over `adv_days` up to "
        "that date (point in time); None = every listed symbol with bars",
    )
    adv_days: int = Field(30, ge=1, description="calendar days of value traded behind `top_n`")
    history_start: dt.date | None = Field(
        None, description="no day before this is asked for (default: each run asks for the windows it reads)"
    )
    overlap_days: int = Field(1, ge=0, description="stored days asked again by each sync (vendors restate them)")


class CcxtSourceConfig(_ConnectorSourceConfig):
    """An exchange through ccxt: its markets ranked by 24 h quote volume, and their daily candles."""

    kind: Literal["ccxt"]
    exchange: str = Field("binance", description="a ccxt exchange id")
    quote: str = Field("USDT", description="quote currency of the markets discovered")
    min_quote_volume: float = Field(0.0, ge=0, description="24 h quote volume below which a market is skipped")
    pool: int | None = Field(
        50,
        ge=1,
        description="markets ingested: the most traded by 24 h volume *when the sync runs* (None = all "
        "listed: less survivorship bias in a backtest, more requests)",
    )
    market_types: tuple[Literal["spot", "swap"], ...] = Field(
        ("spot",), description="spot markets, perpetual swaps, or both"
    )
    replay: str | None = Field(
        None,
        description="a folder of recorded exchange responses served instead of the network (the "
        "example and the tests); relative to the manifest file",
    )

    @model_validator(mode="after")
    def _replay_is_binance(self) -> CcxtSourceConfig:
        if self.replay is not None and self.exchange != "binance":
            raise ValueError(f"replay serves recorded Binance responses; exchange is {self.exchange!r}")
        return self


class YFinanceSourceConfig(_ConnectorSourceConfig):
    """Yahoo Finance through yfinance: daily split- and dividend-adjusted bars of the tickers listed."""

    kind: Literal["yfinance"]
    tickers: list[str] = Field(
        default_factory=list, description="Yahoo tickers; may be empty for a source only other sources price through"
    )
    exchange: str = Field("NASDAQ", description="exchange prefix of the physical symbols")
    exchanges: dict[str, str] = Field(default_factory=dict, description="per-ticker exchange, overriding `exchange`")
    asset_type: str = "equity"


class TradingViewSourceConfig(_ConnectorSourceConfig):
    """A TradingView screen (tradingview-screener) priced by another source: the screen picks the
    instruments, `bars_from` (a yfinance or ccxt source) brings their history."""

    kind: Literal["tradingview"]
    market: str = Field("america", description="the screener's market: america, crypto, uk, ...")
    filters: list[dict] = Field(
        default_factory=list, description="{left, operation, right}: greater, less, equal, in_range, match"
    )
    columns: list[str] | None = Field(None, description="columns kept in the listing's metadata (default: a set)")
    sort_by: str = "Value.Traded"
    ascending: bool = False
    limit: int = Field(100, ge=1)
    asset_type: str | None = None
    bars_from: str = Field(description="the source (kind yfinance or ccxt) whose bars price the screen")


SourceConfig = Annotated[
    Annotated[FilesSourceConfig, Tag("files")]
    | Annotated[CcxtSourceConfig, Tag("ccxt")]
    | Annotated[YFinanceSourceConfig, Tag("yfinance")]
    | Annotated[TradingViewSourceConfig, Tag("tradingview")],
    Discriminator(lambda v: v.get("kind", "files") if isinstance(v, dict) else getattr(v, "kind", "files")),
]


class Universe(_Strict):
    source: str
    symbols: list[str] | None = Field(default=None, description="subset of the source's symbols; None = all")
    asset_class: Literal["equity", "etf", "crypto", "index"] = "equity"
    calendar: str | None = Field(
        default=None,
        description="trading calendar: an exchange_calendars code (XNYS, XLON, ...) or '24/7'; default XNYS for "
        "equity, etf and index universes, 24/7 for crypto. A bar on a day that is not a session is a data "
        "error; a session without a bar is a gap; annualisation is 252 (exchange) or 365 (24/7)",
    )
    benchmarks: list[str] = Field(
        default_factory=list,
        description="reference series as 'source:TICKER' (e.g. skfolio_sp500_index:SP500): priced and featured "
        "with the universe, never vetoed, never recruited; the `market` profile holds them",
    )

    regime: RegimeSettings = Field(
        default_factory=RegimeSettings, description="regime detector on the cross-sectional mean return"
    )

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: str | None) -> str | None:
        return None if v is None else check_calendar_name(v)

    @property
    def trading_calendar(self) -> TradingCalendar:
        """The calendar named here (checked when the manifest loaded), else the asset class's default."""
        return TradingCalendar(self.calendar or DEFAULT_CALENDAR[self.asset_class])

    @field_validator("benchmarks")
    @classmethod
    def _benchmark_refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            source, sep, ticker = ref.partition(":")
            if not sep or not source or not ticker:
                raise ValueError(f"benchmark {ref!r} must look like 'source:TICKER'")
        if len(set(v)) != len(v):
            raise ValueError(f"benchmarks listed twice: {v}")
        return v


class Sleeve(_Strict):
    universe: str
    logic: Literal["trend", "reversion"]
    direction: Literal["long", "short"] = "long"
    selection: SelectionSettings = Field(
        default_factory=SelectionSettings,
        description="the funnel: ranker, clustering, filter chain, recruitment and relaxation (selection/funnel.py)",
    )
    risk_profiles: list[str] = Field(default_factory=lambda: list(DEFAULT_SLEEVE_PROFILES))
    engine: str = Field(
        "custom",
        description="custom (numpy, default: 13x faster walk-forward at equal weights), "
        "skfolio, riskfolio, pyportfolioopt",
    )
    risk: RiskConfig = Field(
        default_factory=RiskConfig,
        description="HRP variant, covariance, cluster caps, barbell and CVaR options (allocation/optimise.py)",
    )
    description: str = ""

    @field_validator("risk_profiles")
    @classmethod
    def _known_profiles(cls, v: list[str]) -> list[str]:
        for p in v:
            if p not in RISK_PROFILES:
                raise ValueError(f"unknown risk profile {p!r}; known: {', '.join(RISK_PROFILES)}")
        if len(set(v)) != len(v) or not v:
            raise ValueError(f"risk_profiles must be a non-empty list without duplicates, got {v}")
        return v

    _known_engine = field_validator("engine")(_known_engine)


class Allocation(_Strict):
    engine: str = "custom"
    profile: str = "hrp"

    _known_engine = field_validator("engine")(_known_engine)

    @field_validator("profile")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ALLOCATION_PROFILES:
            raise ValueError(f"unknown allocation profile {v!r}; known: {', '.join(ALLOCATION_PROFILES)}")
        return v


class ChildRef(_Strict):
    """A meta's child: exactly one of `sleeve` or `meta`."""

    sleeve: str | None = None
    meta: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ChildRef:
        if (self.sleeve is None) == (self.meta is None):
            raise ValueError("a child names exactly one of `sleeve:` or `meta:`")
        return self

    @property
    def kind(self) -> Literal["sleeve", "meta"]:
        return "sleeve" if self.sleeve is not None else "meta"

    @property
    def name(self) -> str:
        return self.sleeve if self.sleeve is not None else self.meta  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class Meta(_Strict):
    children: list[ChildRef] = Field(min_length=1)
    allocation: Allocation = Allocation()
    min_weight: float = Field(0.0, ge=0, le=1)
    max_weight: float = Field(1.0, gt=0, le=1)
    min_trade: float = Field(0.01, ge=0, le=1, description="orders: |drift| below this is dust (root metas)")
    min_child_success_share: float = Field(
        0.75, ge=0, le=1, description="health gate: a child below this share of successful optimisations is vetoed"
    )
    risk_profiles: list[str] | None = Field(
        default=None, description="risk lenses to build; None = every profile all descendant sleeves share"
    )
    description: str = ""

    @field_validator("children", mode="before")
    @classmethod
    def _parse_short_form(cls, v):
        # Accept the short form "sleeve:name" / "meta:name" as well as mappings.
        if v is None:
            return v  # pydantic names the missing list
        if not isinstance(v, list):
            raise ValueError(f"must be a list of children, e.g. [{v if isinstance(v, str) else 'sleeve:<name>'}]")
        out = []
        for item in v:
            if isinstance(item, str):
                kind, sep, name = item.partition(":")
                if not sep or kind not in ("sleeve", "meta"):
                    raise ValueError(f"child {item!r} must look like 'sleeve:<name>' or 'meta:<name>'")
                item = {kind: name}
            out.append(item)
        return out

    @model_validator(mode="after")
    def _feasible_bounds(self) -> Meta:
        n = len(self.children)
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight ({self.min_weight}) exceeds max_weight ({self.max_weight})")
        if n * self.min_weight > 1 + 1e-12:
            raise ValueError(f"infeasible bounds: {n} children x min_weight {self.min_weight} > 1")
        if n * self.max_weight < 1 - 1e-12:
            raise ValueError(f"infeasible bounds: {n} children x max_weight {self.max_weight} < 1")
        return self


class Tournament(_Strict):
    """The scoreboard: every sleeve under engines x profiles, walked forward next to the graph's lenses."""

    engines: list[str] = Field(
        default_factory=lambda: ["custom", "skfolio", "pyportfolioopt"],
        description="riskfolio is the slowest (~50 ms a fit): opt in here",
    )
    profiles: list[str] = Field(default_factory=lambda: list(PROFILES))
    sleeves: list[str] | None = Field(
        default_factory=list,
        description="sleeves scored by the tournament ([] = none, the default: it costs ~19 optimisations per "
        "sleeve and date; None = every sleeve)",
    )

    @field_validator("engines")
    @classmethod
    def _engines(cls, v: list[str]) -> list[str]:
        for e in v:
            _known_engine(cls, e)
        return v

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if p not in PROFILES]
        if unknown:
            raise ValueError(f"unknown profiles {unknown}; known: {', '.join(PROFILES)}")
        return v


class Manifest(_Strict):
    calendar: Calendar
    lookbacks: Lookbacks = Lookbacks()
    health: HealthPolicy = HealthPolicy()
    friction: dict[str, Friction] = Field(
        default_factory=lambda: {
            "equity": Friction(slippage_bps=5, commission_bps=1),
            "etf": Friction(slippage_bps=5, commission_bps=1),
            "index": Friction(slippage_bps=5, commission_bps=1),
            "crypto": Friction(slippage_bps=10, commission_bps=4),
        }
    )
    max_meta_depth: int = Field(4, ge=1)
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict,
        description="your own data sources by name (a universe's `source` may name one): kind files, ccxt, "
        "yfinance or tradingview",
    )
    universes: dict[str, Universe] = Field(min_length=1)
    sleeves: dict[str, Sleeve] = Field(min_length=1)
    metas: dict[str, Meta] = Field(default_factory=dict)
    tournament: Tournament = Tournament()

    @model_validator(mode="after")
    def _graph(self) -> Manifest:
        for section in ("universes", "sleeves", "metas"):
            for name in getattr(self, section):
                if not re.match(NAME_PATTERN, name):
                    raise ValueError(f"{section}.{name}: names must match {NAME_PATTERN}")
        both = set(self.sleeves) & set(self.metas)
        if both:
            raise ValueError(f"names used both as sleeve and meta: {sorted(both)}")
        from quant_assets.data.sources import SOURCES

        for name in self.sources:
            if name in SOURCES:
                raise ValueError(f"sources.{name}: the name of a built-in source; choose another")
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"sources.{name}: names must match {NAME_PATTERN}")
        for name, source in self.sources.items():
            if isinstance(source, TradingViewSourceConfig):
                priced_by = self.sources.get(source.bars_from)
                if not isinstance(priced_by, YFinanceSourceConfig | CcxtSourceConfig):
                    raise ValueError(
                        f"sources.{name}.bars_from: {source.bars_from!r} must name a source of kind yfinance or ccxt "
                        f"in `sources` (have: {sorted(self.sources)})"
                    )
        known = sorted({*SOURCES, *self.sources})
        for name, universe in self.universes.items():
            if universe.source not in known:
                raise ValueError(f"universes.{name}.source: unknown source {universe.source!r}; known: {known}")
            own = self.sources.get(universe.source)
            if isinstance(own, YFinanceSourceConfig) and not own.tickers:
                raise ValueError(f"universes.{name}.source: sources.{universe.source}.tickers is empty")
            for ref in universe.benchmarks:
                if ref.partition(":")[0] not in known:
                    raise ValueError(f"universes.{name}.benchmarks: unknown source in {ref!r}; known: {known}")
        for name, sleeve in self.sleeves.items():
            if sleeve.universe not in self.universes:
                raise ValueError(f"sleeves.{name}.universe: unknown universe {sleeve.universe!r}")
            if "market" in sleeve.risk_profiles and not self.universes[sleeve.universe].benchmarks:
                raise ValueError(
                    f"sleeves.{name}.risk_profiles: `market` holds the universe's benchmarks, and "
                    f"universes.{sleeve.universe}.benchmarks is empty"
                )
            if sleeve.risk.market_neutral and not self.universes[sleeve.universe].benchmarks:
                raise ValueError(
                    f"sleeves.{name}.risk.market_neutral: the beta bound is measured against the universe's "
                    f"benchmarks, and universes.{sleeve.universe}.benchmarks is empty"
                )
            if sleeve.risk.market_neutral and sleeve.engine != "custom":
                raise ValueError(f"sleeves.{name}.risk.market_neutral: custom engine only (got {sleeve.engine!r})")
            ac = self.universes[sleeve.universe].asset_class
            if ac not in self.friction:
                raise ValueError(f"sleeves.{name}: no friction rates for asset class {ac!r}")
        for name, meta in self.metas.items():
            seen = set()
            for child in meta.children:
                pool = self.sleeves if child.kind == "sleeve" else self.metas
                if child.name not in pool:
                    raise ValueError(f"metas.{name}.children: unknown {child.kind} {child.name!r}")
                if str(child) in seen:
                    raise ValueError(f"metas.{name}.children: {child} listed twice")
                seen.add(str(child))
        for name in self.tournament.sleeves or []:
            if name not in self.sleeves:
                raise ValueError(f"tournament.sleeves: unknown sleeve {name!r}")
        _check_cycles(self.metas)
        _check_depth(self.metas, self.max_meta_depth)
        for name, meta in self.metas.items():
            shared = self.shared_risk_profiles(name)
            if meta.risk_profiles is not None:
                missing = [p for p in meta.risk_profiles if p not in shared]
                if missing:
                    raise ValueError(
                        f"metas.{name}.risk_profiles: {missing} not built by every descendant sleeve "
                        f"(shared: {sorted(shared)})"
                    )
            elif not shared:
                raise ValueError(f"metas.{name}: its descendant sleeves share no risk profile")
        return self

    # ---- derived views (cheap, used by the asset factories) -------------------------------

    def price_source(self, name: str, root: str | Path | None = None):
        """The source a universe or candidate names: one of `sources` (built once per manifest and
        lakehouse), else a registered one. A connector source keeps its ingest store in the
        lakehouse at `root`."""
        from quant_assets.data.sources import get_source

        cfg = self.sources.get(name)
        if cfg is None:
            return get_source(name)
        if isinstance(cfg, FilesSourceConfig):
            from quant_assets.data.files import files_source

            return files_source(name, cfg.path, cfg.exchange, cfg.asset_type)
        if root is None:
            raise ValueError(f"sources.{name}: a {cfg.kind} source keeps its bars in the lakehouse; give its root")
        from quant_assets.data.connectors import connector_source

        priced_by = self.sources.get(cfg.bars_from) if isinstance(cfg, TradingViewSourceConfig) else None
        return connector_source(name, cfg, str(root), priced_by)

    def descendant_sleeves(self, meta: str) -> list[str]:
        out: list[str] = []
        for child in self.metas[meta].children:
            if child.kind == "sleeve":
                out.append(child.name)
            else:
                out.extend(self.descendant_sleeves(child.name))
        return sorted(set(out))

    def shared_risk_profiles(self, meta: str) -> list[str]:
        sets = [set(self.sleeves[s].risk_profiles) for s in self.descendant_sleeves(meta)]
        shared = set.intersection(*sets) if sets else set()
        return [p for p in RISK_PROFILES if p in shared]

    def meta_risks(self, meta: str) -> list[str]:
        explicit = self.metas[meta].risk_profiles
        return list(explicit) if explicit is not None else self.shared_risk_profiles(meta)

    @cached_property
    def metas_bottom_up(self) -> list[str]:
        """Metas ordered so every child meta precedes its parents."""
        from graphlib import TopologicalSorter

        graph = {m: {c.name for c in meta.children if c.kind == "meta"} for m, meta in self.metas.items()}
        return list(TopologicalSorter(graph).static_order())

    @property
    def tournament_sleeves(self) -> list[str]:
        t = self.tournament.sleeves
        return list(self.sleeves) if t is None else list(t)

    @cached_property
    def roots(self) -> list[str]:
        children = {c.name for meta in self.metas.values() for c in meta.children if c.kind == "meta"}
        return [m for m in self.metas if m not in children]


def _check_cycles(metas: dict[str, Meta]) -> None:
    """Depth-first search that reports the first cycle as a readable path."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for child in metas[node].children:
            if child.kind != "meta":
                continue
            if state.get(child.name) == 1:
                cycle = path[path.index(child.name) :] + [child.name]
                raise ValueError(f"meta cycle: {' -> '.join(cycle)}")
            if state.get(child.name) is None:
                visit(child.name, path + [child.name])
        state[node] = 2

    for name in metas:
        if state.get(name) is None:
            visit(name, [name])


def _check_depth(metas: dict[str, Meta], limit: int) -> None:
    """Nesting depth = metas on the longest root-to-sleeve path."""

    def longest(node: str) -> list[str]:
        best: list[str] = []
        for child in metas[node].children:
            if child.kind == "meta":
                sub = longest(child.name)
                if len(sub) > len(best):
                    best = sub
        return [node] + best

    for name in metas:
        path = longest(name)
        if len(path) > limit:
            raise ValueError(f"meta nesting depth {len(path)} exceeds max_meta_depth {limit}: {' -> '.join(path)}")


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid manifest {origin}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) or repr(value) in msg else f" (got {value!r})"
        lines.append(f"  {loc + ': ' if loc else ''}{msg}{shown}")
    return "\n".join(lines)


def parse_manifest(data: dict, origin: str = "<dict>") -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise ManifestError(_format_validation_error(err, origin)) from None


def default_manifest_path() -> Path:
    return Path(str(resources.files("quant_assets.config") / "manifests" / "default.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key repeated in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        self.flatten_mapping(node)  # resolves YAML merge keys (<<: *base) first
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"unhashable key {key!r}", key_node.start_mark
                ) from None
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    """Load the manifest from `path`, else $QUANT_ASSETS_MANIFEST, else the bundled default."""
    path = Path(path or os.environ.get(MANIFEST_ENV_VAR) or default_manifest_path())
    if not path.exists():
        raise ManifestError(f"manifest file not found: {path} (set {MANIFEST_ENV_VAR} or pass a path)")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ManifestError(f"manifest {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must be a mapping at the top level")
    for source in (data.get("sources") or {}).values():  # folders relative to the manifest file
        for key in ("path", "replay"):
            if isinstance(source, dict) and isinstance(source.get(key), str):
                source[key] = str((path.parent / os.path.expanduser(source[key])).resolve())
    return parse_manifest(data, origin=str(path))
