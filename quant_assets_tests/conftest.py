import os
import tempfile
import warnings

import pytest

import quant_assets  # noqa: F401  first: it sets POLARS_MAX_THREADS before any test module imports polars

# The trading calendars' disk cache of this test session (inherited by the processes tests start),
# not the user's ~/.cache: a test run leaves nothing behind but a temporary folder.
os.environ.setdefault("QUANT_ASSETS_CACHE", tempfile.mkdtemp(prefix="quant_assets_cache_"))

warnings.filterwarnings("ignore", module="dagster")


@pytest.fixture(scope="session", autouse=True)
def _quiet_dagster_logs():
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def block_returns():
    """Two blocks of perfectly correlated assets (clusters A and B); across blocks rho is exactly 0."""
    import numpy as np
    import pandas as pd

    n = 120
    f1 = 0.01 * np.tile([1.0, -1.0, 1.0, -1.0], n // 4)
    f2 = 0.01 * np.tile([1.0, 1.0, -1.0, -1.0], n // 4)
    idx = pd.bdate_range("2024-01-01", periods=n)
    return pd.DataFrame({"A1": f1, "A2": 2 * f1, "A3": 3 * f1, "B1": f2, "B2": 0.5 * f2, "B3": 1.5 * f2}, index=idx)
