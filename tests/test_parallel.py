"""Independent jobs run in order, here or on a local Dask cluster."""

from __future__ import annotations

import operator

import pytest

from tpopk.parallel import run_tasks

JOBS = [(2, 3), (5, 1), (0, 7), (1, 1)]


def test_jobs_run_here_in_order() -> None:
    assert run_tasks(operator.sub, JOBS) == [-1, 4, -7, 0]


@pytest.mark.slow
def test_local_cluster_returns_the_results_in_the_order_given() -> None:
    assert run_tasks(operator.sub, JOBS, scheduler="local") == [-1, 4, -7, 0]
