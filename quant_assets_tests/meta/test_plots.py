"""The per-partition pictures (cells of colour, not figures): what they show, the same pixels as
matplotlib's `imsave`, and that drawing them imports neither pyplot nor matplotlib's figure module
(a fresh process, such as a run the UI launches, would pay ~0.5 s for them)."""

import base64
import io
import re

import numpy as np
from PIL import Image

from quant_assets.meta.plots import heatmap_md, regime_strip_md
from quant_assets_tests.fresh_process import printed_by_fresh_process


def png(markdown: str) -> np.ndarray:
    (b64,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", markdown)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_a_regime_strip_has_one_cell_of_its_colour_per_date():
    pixels = png(regime_strip_md(["d1", "d2", "d3"], ["CRISIS", "QUIET", "CRISIS"], "Regime", cell=10, height=24))
    assert pixels.shape == (24, 30, 3)
    crisis, quiet = pixels[0, 0], pixels[0, 10]
    assert (pixels[:, :10] == crisis).all() and (pixels[:, 20:] == crisis).all() and (pixels[:, 10:20] == quiet).all()
    assert crisis[0] > 200 and crisis[1] < 100  # red
    caption = regime_strip_md(["d1", "d2", "d3"], ["CRISIS", "QUIET", "CRISIS"], "Regime")
    assert "d1 .. d3" in caption and "QUIET 1" in caption and "CRISIS 2" in caption


def test_a_heatmap_has_one_cell_per_value_low_dark_high_yellow():
    pixels = png(heatmap_md(np.array([[0.0, 1.0], [0.5, 1.0]]), "Heat", "caption", cell=8))
    assert pixels.shape == (16, 16, 3)
    low, high = pixels[0, 0].astype(int), pixels[0, 8].astype(int)
    assert low.sum() < 200 and high[0] > 200 and high[1] > 200 and high[2] < 100  # viridis: dark purple, yellow
    assert (pixels[8, 8] == pixels[0, 8]).all()  # equal values, equal colour


def test_drawing_the_pictures_imports_no_figure_machinery():
    code = (
        "import sys, numpy as np\n"
        "from quant_assets.meta.plots import heatmap_md, regime_strip_md\n"
        "regime_strip_md(['d'], ['QUIET'], 't'); heatmap_md(np.eye(2), 't', 'c')\n"
        "print('matplotlib.pyplot' in sys.modules, 'matplotlib.figure' in sys.modules)"
    )
    assert printed_by_fresh_process(code) == ["False", "False"]


def test_the_pixels_are_matplotlibs_imsave_ones():
    import matplotlib.image

    values = np.array([[0.0, 0.2, 1.5], [3.0, np.nan, 0.7]])
    ours = png(heatmap_md(values, "Heat", "caption", cell=1))
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, values, format="png", cmap="viridis", vmin=0.0, vmax=3.0)
    theirs = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(ours, theirs)
