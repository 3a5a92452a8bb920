"""quant_assets: a Dagster asset graph for fractal portfolio optimisation over a Parquet lakehouse.

Polars runs on one thread in this package's processes unless POLARS_MAX_THREADS says otherwise
(it must be set before polars is first imported, so it is set here). A step's frames are small (a
period's rows) and its heavy work runs in forked worker processes, one per core
(`assets/parallel.py`); polars' own pool woke for each of a backfill's ~100,000 small operations
and its idle threads then spun (`sched_yield`) against those workers: 1.8 million involuntary
context switches and ~3 s of kernel time in the full-history backfill, which took 55.5 s on average
with one thread against 59.1 s (three interleaved pairs; `benchmarks.backfill` prints the CPU time
and the context switches; docs/architecture.md). Set POLARS_MAX_THREADS to
give polars more threads, e.g. for large ad-hoc reads on a machine with many cores.
"""

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
