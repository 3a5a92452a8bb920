"""The selection funnel, stages 3-6: rank, partition, veto, recruit, synthesise.

A pure library: plain frames and frozen settings in, frames out; no Dagster, no manifest.
`run_funnel` ranks every candidate for the sleeve (rankers.py), applies the policy filters
(filters.py) within the correlation clusters (clustering.py), recruits the best names per cluster
and, when too few survive, relaxes in recorded stages (Hierarchical Threshold Relaxation). Every
winner says which stage picked it, every veto says whether relaxation lifted it, and every winner
becomes a strategy atom whose id is never parsed back into a symbol.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from quant_assets.selection.clustering import (
    ClusteringSettings,
    ClusterResult,
    check_regime,
    cluster,
    correlation_clusters,
)
from quant_assets.selection.filters import (
    FILTERS,
    VETO_COLUMNS,
    DarwinianSettings,
    Filter,
    FrictionSettings,
    PredictabilitySettings,
    TrendRegimeSettings,
    make_filter,
    run_filters,
    veto_frame,
)
from quant_assets.selection.rankers import FeatureView, RankerSettings, Ranking, get_ranker, sleeve_sign

__all__ = [
    "FUNNEL_VETO_COLUMNS",
    "SELECTION_COLUMNS",
    "STAGES",
    "FunnelResult",
    "RelaxationSettings",
    "SelectionSettings",
    "atom_id",
    "composition_map",
    "correlation_clusters",
    "run_funnel",
    "synthetic_long",
]

STAGES = ("strict", "relaxed_thresholds", "cluster_representative", "global_topup", "scarcity")
RelaxationStage = Literal["relaxed_thresholds", "cluster_representative", "global_topup", "scarcity"]
RELAXATION_STAGES: tuple[RelaxationStage, ...] = (
    "relaxed_thresholds",
    "cluster_representative",
    "global_topup",
    "scarcity",
)
SELECTION_COLUMNS = [
    "symbol",
    "direction",
    "score",
    "rank",
    "cluster",
    "vetoed",
    "veto_reason",
    "selected",
    "selected_by",
    "atom_id",
    "sign",
]
FUNNEL_VETO_COLUMNS = [*VETO_COLUMNS, "lifted_by"]
COMPOSITION_COLUMNS = ["atom_id", "symbol", "logic", "direction", "sign"]
_STRICT = ConfigDict(extra="forbid", frozen=True)


class RelaxationSettings(BaseModel):
    """Hierarchical Threshold Relaxation, run only while winners < SelectionSettings.min_winners.

    The winners floor and cap are SelectionSettings.min_winners / max_winners (one source of truth;
    the reference hard-codes 15 and 25). The reference also *tightens* the entropy ceiling (x0.9)
    when mean entropy exceeds 0.95, inside a loop meant to loosen it; that contradiction is dropped.
    """

    model_config = _STRICT

    stages: tuple[RelaxationStage, ...] = Field(
        RELAXATION_STAGES, description="relaxation stages enabled, always run in the canonical order"
    )
    entropy_factor: float = Field(1.2, ge=1, description="stage 2: entropy_max x this ...")
    entropy_cap: float = Field(1.0, gt=0, le=1, description="... capped here")
    efficiency_factor: float = Field(0.8, ge=0, le=1, description="stage 2: efficiency_min x this")
    toxic_entropy_max: float | None = Field(
        0.999,
        gt=0,
        le=1,
        validation_alias=AliasChoices("toxic_entropy_max", "representative_entropy_max"),
        description="toxicity ceiling: no stage recruits a name whose permutation entropy is above this "
        "(a series that close to 1 is noise); a scarce universe yields fewer winners instead",
    )


class SelectionSettings(BaseModel):
    """Everything the funnel needs for one sleeve; defaults pick 3-8 winners from ~20 stocks."""

    model_config = _STRICT

    ranker: RankerSettings = RankerSettings()
    clustering: ClusteringSettings = ClusteringSettings()
    filters: tuple[str, ...] = Field(
        ("darwinian", "predictability"),
        description="policy chain in order; darwinian is always first "
        "(added when omitted). Also: friction, trend_regime",
    )
    darwinian: DarwinianSettings = DarwinianSettings()
    predictability: PredictabilitySettings = PredictabilitySettings()
    friction: FrictionSettings = FrictionSettings()
    trend_regime: TrendRegimeSettings = TrendRegimeSettings()
    relaxation: RelaxationSettings = RelaxationSettings()
    top_n_per_cluster: int = Field(2, ge=1)
    max_winners: int = Field(8, ge=1)
    min_winners: int = Field(3, ge=0)

    @field_validator("filters")
    @classmethod
    def _chain(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in v if f not in FILTERS]
        if unknown:
            raise ValueError(f"unknown filters {unknown}; known: {', '.join(sorted(FILTERS))}")
        if len(set(v)) != len(v):
            raise ValueError(f"filters must not repeat, got {list(v)}")
        if "darwinian" not in v:
            v = ("darwinian", *v)
        if v[0] != "darwinian":
            raise ValueError(f"darwinian must be the first filter, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> SelectionSettings:
        if self.min_winners > self.max_winners:
            raise ValueError(f"min_winners ({self.min_winners}) exceeds max_winners ({self.max_winners})")
        return self

    def build_filters(self) -> list[Filter]:
        """The filter chain, each with its settings from this model (registered extras: defaults)."""
        return [
            make_filter(name, getattr(self, name, None) if name in type(self).model_fields else None)
            for name in self.filters
        ]


class FunnelResult:
    """One date's funnel: what recruitment decided, with every stage's output as a frame on demand.

    The arrays are what a backtest keeps (one per rebalance date); the frames (`rankings`, `vetoes`,
    `selection`, `stage_counts`, `composition`, `streams`) are built when asked for.
    """

    def __init__(
        self,
        ranking: Ranking,
        strict: list,
        lifted: list[str],
        cluster_of: dict[str, int],
        picked: dict[str, str],
        first_reason: dict[str, str],
        logic: str,
        direction: str,
        returns: pd.DataFrame | None,
        clusters: ClusterResult | None,
    ):
        self.ranking, self.strict, self.lifted, self.cluster_of = ranking, strict, lifted, cluster_of
        self.picked, self.first_reason, self.logic, self.direction = picked, first_reason, logic, direction
        self.returns = returns
        if clusters is not None:
            self.clusters = clusters

    @cached_property
    def clusters(self) -> ClusterResult:
        """The partition the funnel recruited from. Given labels only (the walk-forward's path, which
        never reads it), it is built from them on first use: a pandas Series per date and sleeve
        cost the workers about 1.4 s over the full history."""
        return ClusterResult(
            pd.Series(self.cluster_of, dtype=int), float("nan"), len(set(self.cluster_of.values())), ()
        )

    @property
    def winners(self) -> list[str]:
        return [s for s in self.ranking.symbols if s in self.picked]

    def selection_columns(self) -> dict[str, list]:
        """The selection table's columns (SELECTION_COLUMNS), one entry per candidate in rank order."""
        order, d = self.ranking.symbols, self.direction
        return {
            "symbol": list(order),
            "direction": [d.upper()] * len(order),
            "score": list(self.ranking.scores),
            "rank": list(range(1, len(order) + 1)),
            "cluster": [self.cluster_of[s] for s in order],
            "vetoed": [s in self.first_reason for s in order],
            "veto_reason": [self.first_reason.get(s, "") for s in order],
            "selected": [s in self.picked for s in order],
            "selected_by": [self.picked.get(s, "") for s in order],
            "atom_id": [atom_id(s, self.logic, d) for s in order],
            "sign": [1 if d == "long" else -1] * len(order),
        }

    @cached_property
    def rankings(self) -> pd.DataFrame:
        return self.ranking.frame()

    @cached_property
    def vetoes(self) -> pd.DataFrame:
        frame = veto_frame(self.strict).assign(lifted_by=self.lifted)
        return frame[FUNNEL_VETO_COLUMNS].reset_index(drop=True)

    @cached_property
    def selection(self) -> pd.DataFrame:
        return pd.DataFrame(self.selection_columns(), columns=SELECTION_COLUMNS).astype(
            {"score": float, "rank": int, "cluster": int, "vetoed": bool, "selected": bool, "sign": int}
        )

    @cached_property
    def stage_counts(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"stage": list(STAGES), "winners": [sum(v == st for v in self.picked.values()) for st in STAGES]}
        )

    @cached_property
    def composition(self) -> pd.DataFrame:
        return composition_map(self.winners, self.logic, self.direction)

    @cached_property
    def streams(self) -> pd.DataFrame:
        if self.returns is None:
            raise ValueError("this funnel result was computed without returns: it has no streams")
        return synthetic_long(self.returns[self.winners], self.direction).set_axis(
            self.composition["atom_id"].tolist(), axis=1
        )


# --- synthesis (stage 6) ---------------------------------------------------------------------------


def atom_id(symbol: str, logic: str, direction: str) -> str:
    """Strategy atom id. Never parsed back: the symbol travels in its own column."""
    return f"{symbol}|{logic}|{direction.lower()}"


def synthetic_long(returns: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The stream an optimiser sees: r for longs, -min(r, 1) for shorts (loss capped at -100%)."""
    if direction.lower() == "long":
        return returns
    return -returns.clip(upper=1.0)


def composition_map(symbols: Iterable[str], logic: str, direction: str) -> pd.DataFrame:
    """One atom per winner: atom_id, symbol, logic, direction, sign (+1 long / -1 short)."""
    d = direction.lower()
    sleeve_sign(logic, d)
    syms = [str(s) for s in symbols]
    sign = 1 if d == "long" else -1
    return pd.DataFrame(
        {"atom_id": [atom_id(s, logic, d) for s in syms], "symbol": syms, "logic": logic, "direction": d, "sign": sign},
        columns=COMPOSITION_COLUMNS,
    ).astype({"sign": int})


# --- recruitment (stage 5) -------------------------------------------------------------------------


class _Recruiter:
    """Picks winners in rank order, remembering the stage of each pick."""

    def __init__(self, order: list[str], cluster_of: dict[str, int], rankable: set[str], top_n: int, cap: int):
        self.order, self.cluster_of, self.rankable = order, cluster_of, rankable
        self.top_n, self.cap = top_n, cap
        self.picked: dict[str, str] = {}

    def full(self) -> bool:
        return len(self.picked) >= self.cap

    def per_cluster(self, vetoed: set[str], stage: str) -> None:
        counts: dict[int, int] = {}
        for s in self.picked:
            counts[self.cluster_of[s]] = counts.get(self.cluster_of[s], 0) + 1
        for s in self.order:
            if self.full():
                return
            c = self.cluster_of[s]
            if s in self.picked or s in vetoed or s not in self.rankable or counts.get(c, 0) >= self.top_n:
                continue
            self.picked[s] = stage
            counts[c] = counts.get(c, 0) + 1

    def top_up(self, pool: Iterable[str], floor: int, stage: str) -> None:
        for s in pool:
            if len(self.picked) >= floor or self.full():
                return
            if s not in self.picked and s in self.rankable:
                self.picked[s] = stage


def _vetoed(vetoes: list) -> set[str]:
    return {row[0] for row in vetoes}


def run_funnel(
    features: pd.DataFrame,
    returns: pd.DataFrame,
    clusters: ClusterResult | None,
    regime: str,
    settings: SelectionSettings,
    logic: str,
    direction: str,
    benchmarks: Iterable[str] = (),
    rankings: pd.DataFrame | None = None,
    strict: pd.DataFrame | None = None,
) -> FunnelResult:
    """Stages 3-6 for one sleeve on one date.

    Candidates are the symbols with a feature row, a returns column and a cluster label (`clusters`
    None -> clustered here with the regime's threshold). Recruitment: per cluster the best
    `top_n_per_cluster` non-vetoed names, at most `max_winners` overall (best ranks first). While
    fewer than `min_winners` won, relaxation stages run in order: relaxed_thresholds (predictability
    re-run with entropy_max x1.2 capped at 1 and efficiency_min x0.8, then per cluster again),
    cluster_representative (each cluster with every member still vetoed sends its best-ranked member
    that passed the darwinian filter and has a known entropy), global_topup (best remaining
    non-vetoed names) and scarcity (best remaining names, vetoes ignored). A name without a score,
    or with permutation entropy above the toxicity ceiling (0.999), is never picked by any stage: a
    scarce universe yields fewer than `min_winners` instead. `vetoed`/`veto_reason` in the
    selection frame report the strict chain; the vetoes frame marks what relaxation lifted. Ties
    are broken by symbol name. `rankings` and `strict` (the stage outputs, when the caller has
    computed them already) are used as given.
    """
    check_regime(regime)
    d = direction.lower()
    sleeve_sign(logic, d)
    if features.index.has_duplicates:
        raise ValueError(f"duplicate symbols in features: {sorted(set(features.index[features.index.duplicated()]))}")
    feats = features.copy()
    feats.index = feats.index.astype(str)
    rets = returns.copy()
    rets.columns = rets.columns.astype(str)
    in_returns = [s for s in feats.index if s in set(rets.columns)]
    if clusters is None:
        clusters = cluster(rets[in_returns], settings.clustering, regime)
    labels = clusters.labels.copy()
    labels.index = labels.index.astype(str)
    symbols = [s for s in in_returns if s in labels.index]
    view = FeatureView.from_frame(feats.loc[symbols])
    ranking = (
        None
        if rankings is None
        else Ranking(
            [str(x) for x in rankings["symbol"]],
            rankings["score"].to_numpy(dtype=float),
            {c: rankings[c].to_numpy() for c in rankings.columns if c not in ("symbol", "score", "rank")},
        )
    )
    strict_rows = None if strict is None else [tuple(r) for r in strict[VETO_COLUMNS].itertuples(index=False)]
    return funnel_view(
        view,
        {s: int(labels[s]) for s in symbols},
        regime,
        settings,
        logic,
        d,
        benchmarks,
        ranking,
        strict_rows,
        rets,
        clusters,
    )


def funnel_view(
    view: FeatureView,
    cluster_of: dict[str, int],
    regime: str,
    settings: SelectionSettings,
    logic: str,
    direction: str,
    benchmarks: Iterable[str] = (),
    ranking: Ranking | None = None,
    strict: list | None = None,
    returns: pd.DataFrame | None = None,
    clusters: ClusterResult | None = None,
) -> FunnelResult:
    """`run_funnel` on arrays: the candidates of `view`, each with its cluster label (the hot path)."""
    d = direction.lower()
    benchmarks = {str(b) for b in benchmarks}
    ranker = get_ranker(settings.ranker.name)
    if ranking is None:
        ranking = ranker.rank_view(view, settings.ranker, logic, d, regime) if len(view) else Ranking([], np.zeros(0))
    chain = settings.build_filters()
    required = ranker.required_columns(settings.ranker, logic)
    if strict is None:
        strict = run_filters(view, chain, d, benchmarks, required=required) if len(view) else []
    lifted = [""] * len(strict)

    order = ranking.symbols
    ceiling = settings.relaxation.toxic_entropy_max
    entropy = dict(zip(view.symbols, view.col("entropy"))) if "entropy" in view else None
    toxic = (
        {s for s, e in entropy.items() if np.isfinite(e) and e > ceiling}
        if entropy is not None and ceiling is not None
        else set()
    )  # never recruited, by any stage: relaxation loosens thresholds, not the toxicity ceiling
    rankable = {s for s, sc in zip(order, ranking.scores) if np.isfinite(sc) and s not in benchmarks and s not in toxic}
    rec = _Recruiter(order, cluster_of, rankable, settings.top_n_per_cluster, settings.max_winners)
    floor = settings.min_winners
    enabled = set(settings.relaxation.stages)

    current = strict
    rec.per_cluster(_vetoed(current), "strict")
    if len(rec.picked) < floor and "relaxed_thresholds" in enabled and "predictability" in settings.filters:
        p, r = settings.predictability, settings.relaxation
        loose = {}
        if p.entropy_max is not None:
            loose["entropy_max"] = max(p.entropy_max, min(r.entropy_cap, p.entropy_max * r.entropy_factor))
        if p.efficiency_min is not None:
            loose["efficiency_min"] = p.efficiency_min * r.efficiency_factor
        current = run_filters(view, chain, d, benchmarks, overrides={"predictability": loose}, required=required)
        still = {row[:3] for row in current}
        lifted = ["relaxed_thresholds" if row[:3] not in still else "" for row in strict]
        rec.per_cluster(_vetoed(current), "relaxed_thresholds")
    vetoed_now = _vetoed(current)
    if len(rec.picked) < floor and "cluster_representative" in enabled:
        hard = {row[0] for row in current if row[1] == "darwinian"}
        ent_max = ceiling  # also excludes a representative whose entropy is unknown (NaN)
        members: dict[int, list[str]] = {}
        for s in order:
            members.setdefault(cluster_of[s], []).append(s)
        reps = []
        for syms in members.values():
            if any(s in rec.picked for s in syms) or not all(s in vetoed_now for s in syms):
                continue
            for s in syms:  # rank order
                ok_entropy = ent_max is None or entropy is None or entropy[s] <= ent_max
                if s in rankable and s not in hard and ok_entropy:
                    reps.append(s)
                    break
        rec.top_up(sorted(reps, key=order.index), len(rec.picked) + len(reps), "cluster_representative")
    if len(rec.picked) < floor and "global_topup" in enabled:
        rec.top_up([s for s in order if s not in vetoed_now], floor, "global_topup")
    if len(rec.picked) < floor and "scarcity" in enabled:
        rec.top_up(order, floor, "scarcity")
    for s, stage in rec.picked.items():
        if stage in ("cluster_representative", "scarcity"):
            lifted = [stage if row[0] == s and lift == "" else lift for row, lift in zip(strict, lifted)]
    first_reason: dict[str, str] = {}
    for row in strict:
        first_reason.setdefault(row[0], row[2])
    return FunnelResult(ranking, strict, lifted, cluster_of, rec.picked, first_reason, logic, d, returns, clusters)
