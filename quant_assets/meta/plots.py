"""Small charts as Dagster-markdown strings: `![title](data:image/png;base64,...)`.

Dagster renders markdown metadata but not files, so a chart travels inline as a base64 PNG. The
figures are small (7 x 3 in at 80 dpi) so one chart stays well under ~60 KB of metadata.
"""

from __future__ import annotations

import base64
import functools
import io
from types import ModuleType

import numpy as np
import pandas as pd
from PIL import Image

FIGSIZE, DPI = (7.0, 3.0), 80
REGIME_COLOURS = {"QUIET": "#9ecae1", "NORMAL": "#a1d99b", "TURBULENT": "#fdae6b", "CRISIS": "#de2d26"}


@functools.cache
def _matplotlib() -> tuple[ModuleType, ModuleType]:
    """(matplotlib, pyplot) on the headless Agg backend, imported on first use: ~0.6 s that a
    process only loading the code location (the UI's code server, `dg check defs`) need not pay."""
    import matplotlib

    matplotlib.use("Agg")  # headless: assets run in worker processes without a display
    import matplotlib.patches  # noqa: F401  (legend handles)
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    return matplotlib, plt


def _to_md(fig, title: str) -> str:
    matplotlib, plt = _matplotlib()
    raw, buf = io.BytesIO(), io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(raw, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)  # figures are global state: leaking them grows memory per materialisation
    # A 64-colour palette PNG is ~3x smaller than RGBA and indistinguishable for line charts.
    raw.seek(0)
    Image.open(raw).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(
        buf, format="PNG", optimize=True
    )
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = title.replace("[", "(").replace("]", ")")
    return f"![{alt}](data:image/png;base64,{b64})"


def _figure(title: str, xlabel: str = "", ylabel: str = ""):
    matplotlib, plt = _matplotlib()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, linewidth=0.5)
    return fig, ax


def _legend(ax, n: int) -> None:
    if n:
        ax.legend(fontsize=7, loc="best", ncol=min(4, max(1, n // 4 + 1)))


def line_plot_md(x, ys: dict, title: str, xlabel: str = "", ylabel: str = "") -> str:
    """One line per named y series over a shared x (e.g. an efficient frontier, weights over time)."""
    fig, ax = _figure(title, xlabel, ylabel)
    for name, y in ys.items():
        ax.plot(list(x), list(y), label=str(name), linewidth=1.2)
    _legend(ax, len(ys))
    return _to_md(fig, title)


def equity_curves_md(series_by_name: dict[str, pd.Series], title: str = "Wealth (start 1.0)") -> str:
    """Compounded wealth from daily returns, one line per strategy (stitched series, not windows)."""
    fig, ax = _figure(title, "", "wealth")
    for name, r in series_by_name.items():
        r = pd.Series(r, dtype=float).fillna(0.0)
        ax.plot(r.index, np.cumprod(1.0 + r.to_numpy()), label=str(name), linewidth=1.2)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    _legend(ax, len(series_by_name))
    return _to_md(fig, title)


def drawdowns_md(series_by_name: dict[str, pd.Series], title: str = "Drawdown (compounded)") -> str:
    """Compounded drawdown from the running wealth peak (start 1.0), one filled line per strategy."""
    matplotlib, plt = _matplotlib()
    fig, ax = _figure(title, "", "drawdown")
    for name, r in series_by_name.items():
        r = pd.Series(r, dtype=float).fillna(0.0)
        w = np.cumprod(1.0 + r.to_numpy())
        dd = w / np.maximum(np.maximum.accumulate(w), 1.0) - 1.0 if len(w) else w
        ax.plot(r.index, dd, label=str(name), linewidth=1.0)
        ax.fill_between(r.index, dd, 0.0, alpha=0.15)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    _legend(ax, len(series_by_name))
    return _to_md(fig, title)


def timeline_md(labels: pd.Series, title: str = "Regime", colours: dict[str, str] | None = None) -> str:
    """A categorical label over dates (e.g. QUIET/NORMAL/TURBULENT/CRISIS) as coloured bands.

    Each run of equal labels becomes one band from its first date to the next run's first date.
    """
    matplotlib, plt = _matplotlib()
    colours = {**REGIME_COLOURS, **(colours or {})}
    s = pd.Series(labels).dropna().astype(str).sort_index()
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], 1.4))
    ax.set_title(title, fontsize=9)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)
    seen: dict[str, str] = {}
    if len(s):
        x = pd.to_datetime(pd.Index(s.index)) if not pd.api.types.is_numeric_dtype(s.index) else s.index
        starts = np.flatnonzero(np.r_[True, s.to_numpy()[1:] != s.to_numpy()[:-1]])
        if len(x) > 1:
            step = (x[-1] - x[0]) / (len(x) - 1)  # the last band gets one average spacing
        else:
            step = pd.Timedelta(days=1) if isinstance(x, pd.DatetimeIndex) else 1
        ends = list(x[starts[1:]]) + [x[-1] + step]
        for k, e in zip(starts, ends):
            lab = s.iloc[k]
            c = seen.setdefault(lab, colours.get(lab, matplotlib.colors.to_hex(plt.get_cmap("tab10")(len(seen) % 10))))
            ax.axvspan(x[k], e, color=c, linewidth=0)
        ax.set_xlim(x[0], ends[-1])
        ax.legend(
            handles=[matplotlib.patches.Patch(color=c, label=lab) for lab, c in seen.items()],
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.35),
            ncol=max(1, len(seen)),
            frameon=False,
        )
    return _to_md(fig, title)


# ---- per-partition pictures: pixels, not figures -------------------------------------------------
# A backfill describes every partition of every asset; a matplotlib figure costs ~100 ms to lay out
# and draw, which over 31 partitions x 6 assets was 20 s of a one-minute backtest. These pictures are
# arrays of coloured cells (~1 ms each) with their axes in the caption: matplotlib's colour mapping,
# Pillow's PNG encoder. Not pyplot, nor `matplotlib.image.imsave`, which imports matplotlib's
# figure module for the vector formats whatever the format: 0.5 s that a fresh process (a run
# the UI launches, the command line's weekly update, which draws no figure) would pay.


def _matplotlib_colours() -> tuple[ModuleType, ModuleType]:
    """(matplotlib.colors, matplotlib.colorizer), imported on first use."""
    import matplotlib.colorizer
    import matplotlib.colors

    return matplotlib.colors, matplotlib.colorizer


def _png_md(pixels: np.ndarray, title: str, caption: str, cmap: str | None = None, vmin=None, vmax=None) -> str:
    _, colorizer = _matplotlib_colours()
    mapping = colorizer.Colorizer(cmap=cmap)  # RGB cells pass through; values go through `cmap`
    mapping.set_clim(vmin, vmax)
    rgba = np.require(mapping.to_rgba(np.asanyarray(pixels), bytes=True), requirements="C")
    buf = io.BytesIO()
    Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).save(buf, format="png")
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = title.replace("[", "(").replace("]", ")")
    return f"**{title}**\n\n![{alt}](data:image/png;base64,{b64})\n\n{caption}"


def regime_strip_md(
    dates: list, labels: list[str], title: str, colours: dict[str, str] | None = None, cell: int = 10, height: int = 24
) -> str:
    """One coloured cell per rebalance date (left to right), coloured by its regime label."""
    mcolors, _ = _matplotlib_colours()
    colours = {**REGIME_COLOURS, **(colours or {})}
    rgb = np.array([mcolors.to_rgb(colours.get(lab, "#999999")) for lab in labels] or [(1, 1, 1)])
    pixels = np.repeat(np.repeat(rgb[None, :, :], height, axis=0), cell, axis=1)
    counts = pd.Series(labels).value_counts()
    legend = ", ".join(f"{lab} {counts.get(lab, 0)}" for lab in colours if counts.get(lab, 0))
    span = f"{dates[0]} .. {dates[-1]}" if dates else "no dates"
    return _png_md(
        pixels,
        title,
        f"One cell per rebalance date, {span}: {legend} "
        f"(QUIET light blue, NORMAL green, TURBULENT orange, CRISIS red).",
    )


def heatmap_md(values: np.ndarray, title: str, caption: str, cell: int = 8) -> str:
    """A (rows x columns) matrix as coloured cells (viridis: low dark, high yellow)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        v = np.zeros((1, 1))
    pixels = np.repeat(np.repeat(v, cell, axis=0), cell, axis=1)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return _png_md(
        pixels,
        title,
        f"{caption} Colour scale {lo:g} (dark) .. {hi:g} (yellow).",
        cmap="viridis",
        vmin=lo,
        vmax=hi if hi > lo else lo + 1,
    )
