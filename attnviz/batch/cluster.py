"""Work that splits into independent items, on a Dask cluster: :func:`map_on_cluster` runs
one function over the items on the cluster's workers with ``dask.distributed`` (the ``dask``
extra: ``pip install 'attnviz[dask]'``), and hands each result back as it comes.

attnviz starts no scheduler and keeps none of its own: the cluster is the person's (``dask
scheduler`` and ``dask worker`` on their machines, a ``LocalCluster``, one on Kubernetes or
SLURM), given by its scheduler's address. Each worker needs attnviz installed and the
model's files where the command names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten

Item = TypeVar("Item")
Result = TypeVar("Result")

INSTALL = ("\u27e8scheduler\u27e9 needs dask.distributed, which is not installed: "
           "pip install 'attnviz[dask]'")
CONNECT_SECONDS = 10  # to reach the scheduler, before giving up (Dask waits 30 s)


def map_on_cluster(function: Callable[[Item], Result], items: Iterable[Item], address: str,
                   finished: Callable[[Result], None]) -> None:
    """``function(item)`` for every item on the workers of the Dask cluster whose scheduler
    is at ``address``; ``finished`` hears of each result (in this process) as it comes, in
    the order they finish.

    ``function`` must be picklable (a module's function, or a ``functools.partial`` of
    one). Ctrl-C, SIGTERM or SIGHUP cancels the items not done; a worker that dies on an
    item (killed for memory, say) ends the work with an AttnvizError.
    """
    try:
        from distributed import Client, KilledWorker, as_completed
    except ImportError:
        raise AttnvizError(INSTALL) from None
    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise AttnvizError(f"cannot reach the Dask scheduler at {printable(address)} "
                           f"({printable(shorten(str(exc), 120))}); start it, or give its "
                           "address as \u27e8scheduler\u27e9 (tcp://HOST:8786)") from None
    futures = []
    try:
        futures = client.map(function, list(items), pure=False)
        for future in as_completed(futures, loop=client.loop):
            finished(future.result())
    except KilledWorker:
        raise AttnvizError("a worker of the Dask cluster died on a line (out of memory?); "
                           "run again, with workers that have more memory") from None
    except BaseException:
        from attnviz.io.signals import held

        with held():  # a second Ctrl-C must not leave the items running
            client.cancel(futures)
        raise
    finally:
        client.close()
