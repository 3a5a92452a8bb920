import warnings

import pytest

warnings.filterwarnings("ignore", module="dagster")


@pytest.fixture(scope="session", autouse=True)
def _quiet_dagster_logs():
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
