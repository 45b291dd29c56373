"""Independent jobs run in this process, on a local Dask cluster or on a Dask scheduler.

Trial simulations (:func:`tpopk.compare`), SBC replications
(:func:`tpopk.diagnostics.simulate_sbc`) and any other set of independent fits go
through :func:`run_tasks`, so the one ``scheduler`` option means the same everywhere.
Each job must carry its own seed: results then do not depend on where, or in which
order, the jobs ran. ``dask.distributed`` is an optional dependency (``tpopk[dask]``),
imported only when a scheduler is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from tpopk.errors import TpopkError

__all__ = ["LOCAL_CLUSTER", "run_tasks"]

#: ``scheduler`` value that starts a local Dask cluster for the duration of the call.
LOCAL_CLUSTER = "local"


def run_tasks[T](
    function: Callable[..., T],
    arguments: Sequence[tuple[Any, ...]],
    *,
    scheduler: str | None = None,
    progressbar: bool = False,
    desc: str | None = None,
) -> list[T]:
    """``[function(*a) for a in arguments]``, locally or on Dask, in the order given.

    Parameters
    ----------
    function
        A picklable (module-level) function; on Dask it runs in the workers.
    arguments
        One tuple of positional arguments per job.
    scheduler
        ``None``: run the jobs one after another in this process. ``"local"``: start a
        Dask ``LocalCluster`` of one single-threaded worker process per core for this call
        (the jobs must not start threads of their own, e.g. nutpie with ``cores=1``). Any
        other string: the address of a running Dask scheduler (``tcp://host:8786``).
    progressbar
        Show progress over jobs (as they finish, on Dask).
    desc
        Label of the progress bar.

    Returns
    -------
    list
        The jobs' results, in the order of ``arguments``.

    Raises
    ------
    TpopkError
        If a scheduler is asked for and ``dask.distributed`` is not installed.
    """
    if scheduler is None:
        return [function(*a) for a in tqdm(arguments, disable=not progressbar, desc=desc)]
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as error:  # pragma: no cover - the test environment has it
        raise TpopkError(
            f"scheduler={scheduler!r} needs dask.distributed: pip install 'tpopk[dask]'"
        ) from error
    if scheduler == LOCAL_CLUSTER:
        cluster = LocalCluster(
            n_workers=min(len(arguments), os.cpu_count() or 1) or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        address = cluster.scheduler_address
    else:
        cluster, address = None, scheduler
    try:
        with Client(address) as client:
            futures = [client.submit(function, *a, pure=False) for a in arguments]
            finished = as_completed(futures)
            for _ in tqdm(finished, total=len(futures), disable=not progressbar, desc=desc):
                pass
            results: list[T] = client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    return results
