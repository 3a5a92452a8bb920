"""The weights you last implemented, per root meta lens: `lakehouse/state/implemented_weights_<meta>_<risk>.csv`
(columns as_of, symbol, weight). Orders are the drift from them; `quant-assets accept` records a
date's target as implemented.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from quant_assets.naming import implemented_name

if TYPE_CHECKING:
    from quant_assets.storage.lakehouse import Lakehouse


def state_path(lh: Lakehouse, meta: str, risk: str) -> Path:
    return lh.root / "state" / f"{implemented_name(meta, risk)}.csv"


def read_state(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["as_of", "symbol", "weight"])
    state = pd.read_csv(path)
    missing = {"as_of", "symbol", "weight"} - set(state.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (expected as_of,symbol,weight)")
    state["as_of"] = pd.to_datetime(state["as_of"]).dt.date
    return state


def record_implemented(path: Path, date: dt.date, weights: pd.Series) -> None:
    """Record `weights` as implemented on `date` (replacing an earlier record for that date).

    Read-modify-write under an exclusive lock, written to a temp file and swapped in atomically,
    so concurrent writers lose nothing and readers never see a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(path)
        state = state[state["as_of"] != date]
        new = pd.DataFrame({"as_of": date, "symbol": weights.index, "weight": weights.to_numpy()})
        out = pd.concat([state, new], ignore_index=True) if len(state) else new
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        out.sort_values(["as_of", "symbol"]).to_csv(tmp, index=False)
        os.replace(tmp, path)
