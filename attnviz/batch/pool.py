"""Worker processes for work that splits into independent items (an export's lines):
:func:`map_unordered` runs one function over the items, ``jobs`` at a time, each in its own
process, and hands each result back as it comes.

A worker computes on one thread (the processes are the parallelism), leaves Ctrl-C to the
main process, which stops it with SIGTERM, and ends with the main process. Stopped, a worker
removes the temporary files of the item it was on (they are written by
:func:`attnviz.io.atomic.write_all`, which cleans up on the way out) and ends at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.signals import STOPPING, Terminated, held

Item = TypeVar("Item")
Result = TypeVar("Result")

STOP_GRACE = 5.0  # seconds a stopped worker has to remove its temporary files, before SIGKILL


def cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container or ``taskset``
    narrows; else every core of the machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def capped(jobs: int) -> int:
    """``jobs``, or the cores this process may use when they are fewer, with a warning.

    Each worker computes on one thread and holds its own model (60 MB for a shipped one, a
    Hugging Face model's size for another): on 2 cores, 12 workers took 760 MB and drew no
    faster than 2, as more processes than cores only wait for one another.
    """
    available = cores()
    if jobs <= available:
        return jobs
    warnings.warn(f"{jobs} jobs were asked for, and this machine lets attnviz use "
                  f"{available} CPU core{'s' * (available != 1)}: drawing {available} at once "
                  "(more processes than cores only wait for one another, each holding a "
                  "model)", AttnvizWarning, stacklevel=2)
    return available


def map_unordered(function: Callable[[Item], Result], items: Iterable[Item], jobs: int,
                  finished: Callable[[Result], None], *,
                  kept: str = "run again with fewer ⟨jobs⟩") -> None:
    """``function(item)`` for every item, in ``jobs`` worker processes; ``finished`` hears of
    each result (in this process) as it comes, in the order they finish.

    ``function`` must be picklable (a module's function, or a ``functools.partial`` of one):
    spawned workers import it. On Linux the workers are forked from this process, so that
    each starts with what this process has loaded (torch, a model): a fresh interpreter
    takes one to two seconds to import torch. A fork copies only the thread that makes it,
    and a lock that another thread held then would stay held in the copy for ever; so while
    this process runs Python threads of its own, once it has used CUDA, and on other
    systems, the workers are spawned instead (see :func:`_fork_is_safe`).

    Ctrl-C, SIGTERM or SIGHUP stops the work at once: the items not yet started are
    cancelled and the workers stopped (see :func:`_stop`); a second Ctrl-C is held until
    they are. A worker that dies (killed by the kernel for memory, say) ends the work with an
    AttnvizError (``kept`` says what is kept and the way out), unless every worker ended by
    SIGTERM: then it was stopped, and the ending is :class:`attnviz.io.signals.Terminated`.
    """
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    items = list(items)
    pool = _start_pool(min(jobs, len(items)))
    try:
        with _signals_blocked():  # the workers start as items are submitted
            futures = [pool.submit(_work, function, item) for item in items]
        for future in as_completed(futures):
            finished(future.result())
    except BrokenProcessPool:
        # The pool, then _stop, end the other workers with SIGTERM: only when every worker
        # ended by SIGTERM did someone send it (to one of them, or to all): stop as told.
        # (A worker _stop had to kill after the grace says nothing either way.)
        workers = _stop(pool)
        if workers and all(worker.exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM)
                           for worker in workers):
            raise Terminated() from None
        raise AttnvizError(f"a worker process died (out of memory?); {kept}") from None
    except BaseException:
        with held():  # a second Ctrl-C must not leave the workers running
            _stop(pool)
        raise
    pool.shutdown(wait=True)


def _start_pool(jobs: int):
    """``jobs`` worker processes: forked where :func:`_fork_is_safe`, else spawned. Forked
    ones all start at the first item submitted, before the pool starts threads of its own;
    spawned ones one by one as items are submitted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if _fork_is_safe() else "spawn"
    with _quiet_resource_tracker():
        return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method),
                                   initializer=_start_worker, initargs=(os.getpid(),))


def _fork_is_safe() -> bool:
    """Whether a fork of this process may draw lines: on Linux, while this process runs one
    thread (see :func:`map_unordered`) and has not used CUDA, which a fork cannot use again ("Cannot
    re-initialize CUDA in forked subprocess"). Not on macOS, whose system libraries start
    threads of their own: Python spawns there by default, as a fork may crash. Not before
    Python 3.10.5, whose pool forked its workers one by one after its own thread started.

    The threads counted are Python's: torch's and the tokenizers' native pools, idle between
    calls, are there too (Python 3.12 warns of them with a DeprecationWarning, hidden by
    default); the workers compute on one thread, and the tokenizers library turns its
    parallelism off in a fork."""
    import threading

    if not sys.platform.startswith("linux") or threading.active_count() > 1 \
            or sys.version_info < (3, 10, 5):
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


@contextlib.contextmanager
def _signals_blocked():
    """Workers start with Ctrl-C, SIGTERM and SIGHUP blocked, as this thread has them here,
    so that a Ctrl-C meant for this process cannot stop one half-started (with a traceback);
    it reaches this process once they run, and :func:`_start_worker` unblocks them in each."""
    stopping = set(STOPPING)
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)


@contextlib.contextmanager
def _quiet_resource_tracker():
    """The pool's queues hold semaphores, which multiprocessing's resource tracker (a process
    started with the first of them) unlinks when this process ends without doing so itself,
    as an interrupted export does (it ends at once, see :mod:`attnviz.cli.exits`). The tracker
    then warns of "leaked semaphore objects" on stderr, after attnviz's last line: started
    here, it is told to clean up without the warning."""
    before = os.environ.get("PYTHONWARNINGS")
    quiet = "ignore:resource_tracker:UserWarning"
    os.environ["PYTHONWARNINGS"] = quiet if not before else f"{before},{quiet}"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = before


def _stop(pool) -> list:
    """Cancel the lines not started and stop the workers now: SIGTERM, which a worker drawing
    a line answers by removing its temporary files and ending (see :func:`_start_worker`);
    SIGKILL for one still running after :data:`STOP_GRACE` seconds.

    ``ProcessPoolExecutor.shutdown(cancel_futures=True)`` alone is not enough: a worker
    ignores Ctrl-C, and the lines already queued to the workers (one more than there are
    workers) are not cancelled, so they would all be drawn first.

    Returns:
        the worker processes that ended by themselves or by SIGTERM (not those killed).
    """
    import time
    from multiprocessing.connection import wait

    # A private attribute, read before shutdown() drops it: the only way to the workers
    # before Python 3.14's ProcessPoolExecutor.terminate_workers().
    workers = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):  # ended already
            worker.terminate()
    # A sentinel is ready once its process has ended, whichever thread reaps it.
    running = {worker.sentinel: worker for worker in workers}
    deadline = time.monotonic() + STOP_GRACE
    while running and time.monotonic() < deadline:
        for sentinel in wait(list(running), deadline - time.monotonic()):
            del running[sentinel]
    for worker in running.values():
        with contextlib.suppress(OSError, ValueError):
            worker.kill()
    return [worker for worker in workers if worker.sentinel not in running]


_BUSY = False  # in a worker: whether it is working on an item


def _work(function: Callable[[Any], Any], item: Any) -> Any:
    global _BUSY
    _BUSY = True
    try:
        return function(item)
    except KeyboardInterrupt:
        # SIGTERM: the line's temporary files are removed (by write_all, on the way here).
        # End the worker rather than take the next line queued to it.
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False


def _start_worker(parent: int | None = None) -> None:
    """A worker leaves Ctrl-C and SIGHUP (a closed terminal sends both to every process of
    the command) to the main process, which stops it with SIGTERM. SIGTERM stops its line
    (whose temporary files are removed) and ends the worker, at once. On Linux, the death of
    ``parent`` (the main process's id) sends it SIGTERM too."""
    from attnviz.model.runtime import one_thread

    one_thread()  # the processes are the parallelism (see map_unordered)
    # A fork inherits the stand-ins for sys.stdout and sys.stderr that the progress bar sets
    # on a terminal: through them, a worker's print or log line would redraw a copy of it.
    sys.stdout, sys.stderr = sys.__stdout__ or sys.stdout, sys.__stderr__ or sys.stderr
    for signum in STOPPING:
        signal.signal(signum, _on_sigterm if signum == signal.SIGTERM else signal.SIG_IGN)
    if parent is not None:
        _end_with(parent)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOPPING))


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends


def _end_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the main process ``parent`` ends, on
    Linux: killed (SIGKILL: it cannot stop its workers), it left them waiting for lines for
    ever, each holding a model, after they drew the lines queued to them. A parent gone
    already (before this call) is seen as this process's new parent."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # no C library to ask: as elsewhere
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        signal.raise_signal(signal.SIGTERM)  # delivered once unblocked, in _start_worker


def _on_sigterm(signum: int, frame: object) -> None:
    if _BUSY:
        raise Terminated()
    os._exit(128 + signum)  # waiting for a line: nothing to clean up, and no traceback
