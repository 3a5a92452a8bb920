"""The tournament scoreboard: engines x profiles of one sleeve, scored on stitched daily series.

Pure pandas: the `tournament_<sleeve>` asset stores every contender's weights and out-of-sample
returns per rebalance date; this module turns a date range of them into one row per contender,
with the best engine of each profile marked (highest Sharpe, ties to the lower drawdown; a contender
that fell back to another profile only wins when every engine did).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.simulation.metrics import performance

SCORE_COLUMNS = [
    "profile",
    "engine",
    "days",
    "total_return",
    "cagr",
    "ann_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "var95",
    "cvar95",
    "turnover",
    "hhi",
    "effective_n",
    "beta",
    "af_dist",
    "stress_alpha",
    "fallback_share",
    "best_engine",
]
MARKET = ("market", "platform")


def stitched(returns: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(profile, engine) -> daily net returns indexed by date, de-duplicated and ascending."""
    out = {}
    for (profile, engine), g in returns.groupby(["profile", "engine"], sort=True):
        g = g.drop_duplicates("date").sort_values("date")
        out[(profile, engine)] = pd.Series(g["net_return"].to_numpy(float), index=pd.DatetimeIndex(g["date"]))
    return out


def scoreboard(returns: pd.DataFrame, weights: pd.DataFrame, annualisation: int | None = None) -> pd.DataFrame:
    """One row per (profile, engine) over the given rows.

    returns: profile, engine, date, net_return, turnover (first day of each period carries the trade).
    weights: profile, engine, rebalance_date, atom_id, weight, profile_used (for HHI and fallbacks).
    Beta and stress_alpha are measured against the `market` profile's series when it is present.
    """
    series = stitched(returns)
    market = series.get(MARKET)
    rows = []
    for (profile, engine), r in series.items():
        g = returns[(returns["profile"] == profile) & (returns["engine"] == engine)]
        w = weights[(weights["profile"] == profile) & (weights["engine"] == engine)]
        history = (
            w.pivot_table(index="rebalance_date", columns="atom_id", values="weight", aggfunc="sum", fill_value=0.0)
            if len(w)
            else None
        )
        perf = performance(
            r,
            annualisation=annualisation,
            benchmark=None if (profile, engine) == MARKET else market,
            weights_history=history,
            turnover=g.loc[g["turnover"] > 0, "turnover"],
        )
        per_date = w.drop_duplicates("rebalance_date")
        fallback = float((per_date["profile_used"] != profile).mean()) if len(per_date) else np.nan
        rows.append(
            {
                "profile": profile,
                "engine": engine,
                **{k: perf.get(k, np.nan) for k in SCORE_COLUMNS[2:-2]},
                "fallback_share": fallback,
            }
        )
    board = pd.DataFrame(rows, columns=SCORE_COLUMNS[:-1])
    if board.empty:
        return board.assign(best_engine=pd.Series(dtype=bool))
    # Rounded so that engines with the same weights (to solver noise) tie, and ties go to the engine name.
    # A contender that fell back never ran the profile it stands for: it can only win when all did.
    ranked = board.assign(
        _s=board["sharpe"].round(9).fillna(-np.inf),
        _d=board["max_drawdown"].round(9).fillna(-np.inf),
        _f=board["fallback_share"].fillna(0.0) > 0,
    )
    best = (
        ranked.sort_values(["profile", "_f", "_s", "_d", "engine"], ascending=[True, True, False, False, True])
        .groupby("profile")
        .head(1)
        .index
    )
    board["best_engine"] = board.index.isin(best)
    return board.sort_values(["profile", "engine"]).reset_index(drop=True)


def scoreboard_markdown(board: pd.DataFrame) -> str:
    """The scoreboard as a markdown table, best engine per profile in bold."""
    if board.empty:
        return "_(no out-of-sample returns in this range yet)_"
    cols = [
        "profile",
        "engine",
        "cagr",
        "ann_vol",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
        "cvar95",
        "turnover",
        "effective_n",
        "beta",
        "af_dist",
        "stress_alpha",
        "fallback_share",
    ]
    pct = {"cagr", "ann_vol", "max_drawdown", "cvar95", "fallback_share"}

    def fmt(c, v):
        if isinstance(v, str):
            return v
        if v is None or not np.isfinite(v):
            return "–"
        return f"{v:.1%}" if c in pct else f"{v:.2f}"

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in board.itertuples(index=False):
        cells = [fmt(c, getattr(row, c)) for c in cols]
        if row.best_engine:
            cells = [f"**{x}**" for x in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
