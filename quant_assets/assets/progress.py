"""Progress of long loops (the rebalance dates of a backfill), shown by the CLI, silent elsewhere.

`make demo` and `make backfill` set QUANT_ASSETS_PROGRESS=1 and then every asset step shows which
step is running, how many of its dates are done and an ETA (tqdm, on stderr). Tests, the UI's run
workers and library calls leave it unset and the loops run bare.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
ENV_VAR = "QUANT_ASSETS_PROGRESS"


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "") not in ("", "0")


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "date") -> Iterator[T]:
    """Iterate `items`, showing a bar named `desc` when progress is enabled."""
    if not enabled():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, mininterval=0.5)
