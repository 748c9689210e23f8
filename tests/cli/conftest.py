"""Every command-line test starts and ends with an empty gin config: flag parsing binds
gin globally."""
import gin
import pytest


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
