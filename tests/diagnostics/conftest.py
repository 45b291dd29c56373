import matplotlib
import pytest

from .synthetic import Synthetic, make_synthetic

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    return make_synthetic()


@pytest.fixture(scope="session")
def biased() -> Synthetic:
    return make_synthetic(bias=1.5)


@pytest.fixture(scope="session")
def censored() -> Synthetic:
    return make_synthetic(lloq=0.3)
