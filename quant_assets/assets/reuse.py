"""Which rebalance dates of a partition a step must compute, and which it can keep as stored.

The weekly update appends one rebalance date to the current period, yet materialising the
period's partition would recompute all of its dates (51 in December). Point in time makes the rows
of date D a function of the inputs dated up to D (up to the next rebalance date for a period's
return), of the manifest and of the code. So a step that rewrites a partition may keep the stored
rows of every date before the first one whose inputs changed, and compute from there
(`Run.resume`): the same code path over fewer dates, not a second implementation.

How a step knows what changed: every partition file carries content hashes of its rows dated up to
each date, in its own footer (`Footer`, written with the rows in one rename). A step's *fingerprint*
of date D in partition K combines

- the salt: the manifest (the calendar's end and demo range aside: they add dates, they do not
  change a date's inputs), the package's source code as imported, Python's version, every
  installed distribution's version and the sources of plugins registered from outside the
  package;
- every upstream asset's partitions its trailing windows reach into before K (whole files) and its
  partition K up to D's horizon (the next rebalance date; the calendar's last date: every row);
- the written table's own earlier partitions of the asset (what it carries over: a sleeve's
  wealth). A sibling the step reads back (the previous weights a sleeve's returns drift from) is
  covered by its own fingerprint: a step resumes from the earliest first-changed date of all its
  keys.

The files a step writes for the last partition of its run record the fingerprint of every date
they hold (`Footer.inputs`); the next run of the step over that partition alone recomputes from
the first date whose recorded fingerprint differs (at least the last date). A file whose checks
failed records none, so its dates are always recomputed; so does a partition that was not the last
of its run (the weekly update appends to the newest period: an earlier one re-materialised alone
computes every date once), a run over several partitions, and a run whose inputs were written
before footers existed. Which steps resume: the funnels, sleeves and metas, and a universe's
features and regime (fingerprinted on the prices, the returns with their health verdicts and the
candidates its step has just written; the universe's market data itself comes from the price
source and is computed for every date).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

from quant_assets.allocation.optimise import ENGINES
from quant_assets.config.manifest import Manifest
from quant_assets.data.calendars import Periods
from quant_assets.selection.filters import FILTERS
from quant_assets.selection.rankers import RANKERS
from quant_assets.storage.lakehouse import Footer, Lakehouse


def _package_sources() -> str:
    """A hash of the package's source files, taken when this module is imported: the code the
    process runs (a file edited later, after a code server preloaded the package, is not it)."""
    h = hashlib.blake2b(digest_size=16)
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


PACKAGE_SOURCES = _package_sources()


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """Python's version and every installed distribution's name and version (the `*.dist-info`
    folders on the import path: listing them takes milliseconds, reading their metadata 0.2 s): a
    solver, a BLAS wheel or a plugin upgraded by a lock refresh recomputes every date."""
    installed = sorted(
        entry.name
        for folder in sys.path
        if folder and Path(folder).is_dir()  # not "" (the working directory)
        for entry in os.scandir(folder)
        if entry.name.endswith((".dist-info", ".egg-info"))
    )
    return f"{sys.version};{';'.join(installed)}"


def _plugins() -> str:
    """The source files of rankers, filters and engines registered from outside the package (their
    code decides rows as much as ours)."""
    package = Path(__file__).resolve().parents[1]
    files = set()
    for plugin in (*ENGINES.values(), *RANKERS.values(), *FILTERS.values()):
        cls = plugin if isinstance(plugin, type) else type(plugin)
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:  # defined where no file is (an interactive session): its name is all we have
            source = None
        if source is None:
            files.add(f"{cls.__module__}.{cls.__qualname__}")
        elif not Path(source).resolve().is_relative_to(package):  # not "quant_assets_tests/"
            files.add(source)
    h = hashlib.blake2b(digest_size=16)
    for f in sorted(files):
        h.update(f.encode())
        if Path(f).is_file():
            h.update(Path(f).read_bytes())
    return h.hexdigest()


def code_version() -> str:
    """The code a date's rows depend on: the package's sources, the installed distributions and
    Python, the registered plugins' sources."""
    return hashlib.blake2b(f"{PACKAGE_SOURCES};{_environment()};{_plugins()}".encode(), digest_size=16).hexdigest()


def salt(manifest: Manifest) -> str:
    """What every fingerprint of the graph starts from: the manifest without the calendar's end and
    demo range, and the code."""
    data = manifest.model_dump(mode="json")
    for field in ("end", "demo_start", "demo_end"):
        data["calendar"].pop(field, None)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(data, sort_keys=True, default=str).encode())
    h.update(code_version().encode())
    return h.hexdigest()


def upstream_fingerprints(
    lh: Lakehouse, periods: Periods, key: str, first_read: str, inputs: list[str], graph_salt: str
) -> dict[dt.date, str] | None:
    """The part of every rebalance date's fingerprint in partition `key` that the step's upstream
    assets `inputs` make (see the module's docstring); `first_read` is the first period the step's
    windows reach. None when an input file predates footers (nothing is known of it by date:
    compute every date)."""
    h = hashlib.blake2b(graph_salt.encode(), digest_size=16)
    current = []  # (label, footer) of the inputs' partition `key`, read up to each date's horizon
    for asset in sorted(inputs):
        for table in lh.tables_of(asset):
            if not _add_whole(h, lh, table, asset, _span(periods, first_read, key)):
                return None
            footer = lh.footer(table, asset, key)
            if footer is not None and not footer.known:
                return None
            current.append((f"{table}/{asset}/{key}", footer))
    everything = periods.all_dates
    out = {}
    for d in periods.dates(key):
        i = bisect.bisect_right(everything, d)
        horizon = everything[i] if i < len(everything) else None  # the calendar's last date: every row
        date_h = h.copy()
        date_h.update(f"{d.isoformat()}<{horizon};".encode())
        for label, footer in current:
            date_h.update(f"{label}={footer.upto(horizon) if footer is not None else 'absent'};".encode())
        out[d] = date_h.hexdigest()
    return out


def own_fingerprints(
    lh: Lakehouse, periods: Periods, key: str, first_read: str, table: str, asset: str, upstream: dict[dt.date, str]
) -> dict[dt.date, str] | None:
    """Each date's fingerprint for the rows of `asset` in `table`: its upstream part and the
    table's own earlier partitions of the asset (what it carries over: a sleeve's wealth), whole."""
    h = hashlib.blake2b(digest_size=8)
    if not _add_whole(h, lh, table, asset, _span(periods, first_read, key)):
        return None
    own = h.hexdigest()
    return {d: f"{fp}.{own}" for d, fp in upstream.items()}


def _span(periods: Periods, first_read: str, key: str) -> list[str]:
    return [k for k in periods.keys if first_read <= k < key]


def _add_whole(h, lh: Lakehouse, table: str, asset: str, keys: list[str]) -> bool:
    """Hash the whole-content hash of each partition (absent ones too); False if one predates footers."""
    for k in keys:
        footer = lh.footer(table, asset, k)
        if footer is not None and not footer.known:
            return False
        h.update(f"{table}/{asset}/{k}={footer.total if footer is not None else 'absent'};".encode())
    return True


def first_changed(stored: Footer | None, current: dict[dt.date, str] | None) -> dt.date | None:
    """The first date whose rows in a stored partition (its `Footer`; None: not stored) were computed
    from other inputs than `current` says; None when every date matches. `current` None (an input
    predates footers): the earliest date possible."""
    if current is None:
        return dt.date.min
    if stored is None or stored.inputs is None:
        return min(current, default=None)
    return next((d for d in sorted(current) if stored.inputs.get(d.isoformat()) != current[d]), None)
