"""What a sleeve's risk profile allocates over on a date: the atoms of its pool, and the per-atom
scores that barbell and hybrid weighting need. Shared by the sleeve lenses and the tournament.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant_assets.selection.features import antifragility_matrix
from quant_assets.selection.funnel import atom_id


@dataclass
class Selected:
    """One date's selection, in rank order: what the sleeve's profiles allocate over."""

    symbols: list[str]
    atom_ids: list[str]
    clusters: list[int]
    selected: list[bool]


def sleeve_pool(
    risk: str, sel: Selected | None, available: set[str], benchmarks: set[str], logic: str, direction: str
) -> tuple[list[str], list[str], list[int]]:
    """The atoms a profile allocates over: (symbols, atom ids, clusters).

    Most profiles hold the winners; the baselines hold the benchmarks (`market`) or every
    recruitable symbol of the pool (`raw_pool_ew`), as atoms of the sleeve's own logic and direction.
    `available`: the symbols with returns on the date.
    """
    if risk == "market":
        symbols = sorted(s for s in benchmarks if s in available)
        return symbols, [atom_id(s, logic, direction) for s in symbols], [0] * len(symbols)
    if sel is None:
        return [], [], []
    keep = [i for i, s in enumerate(sel.symbols) if s in available and (risk == "raw_pool_ew" or sel.selected[i])]
    return [sel.symbols[i] for i in keep], [sel.atom_ids[i] for i in keep], [int(sel.clusters[i]) for i in keep]


def atom_scores(streams: np.ndarray, momentum: np.ndarray, sign: float) -> dict:
    """What barbell and hybrid weighting need per atom (arrays in atom order), oriented like the
    atom's own stream: antifragility of the synthetic-long stream (a short's upside is the stock's
    downside) and the stock's momentum times the sleeve's sign."""
    return {
        "antifragility": antifragility_matrix(np.where(np.isnan(streams), 0.0, streams)),
        "momentum": sign * momentum,
    }
