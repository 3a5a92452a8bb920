"""The bundled skfolio data, read without importing skfolio, equals what skfolio's loaders return."""

import pandas as pd
import pytest
from skfolio.datasets import load_factors_dataset, load_sp500_dataset, load_sp500_index

from quant_assets.data.sources import skfolio_dataset
from quant_assets_tests.fresh_process import printed_by_fresh_process


@pytest.mark.parametrize(
    ("filename", "loader", "shape"),
    [
        ("sp500_dataset.csv.gz", load_sp500_dataset, (8313, 20)),
        ("factors_dataset.csv.gz", load_factors_dataset, (2264, 5)),
        ("sp500_index.csv.gz", load_sp500_index, (8313, 1)),
    ],
)
def test_dataset_equals_skfolios_loader(filename, loader, shape):
    ours, theirs = skfolio_dataset(filename), loader()
    assert ours.shape == shape
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)


def test_reading_the_bundled_data_does_not_import_skfolio():
    code = (
        "import sys\n"
        "from quant_assets.data.sources import get_source\n"
        "frame = get_source('skfolio_sp500').frame()\n"
        "assert frame.shape[1] == 20, frame.shape\n"
        "print('skfolio' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    assert printed_by_fresh_process(code) == ["False", "False"]
