"""Many pairs at once: the maps of every line of a pairs file, drawn to files, and an index.

Each line is one independent task, :func:`render_line`: it traces its pair (through the
sources and the render cache, as the command line does) and writes that pair's files, whole
or not at all, then a small record saying what made them. :func:`run` maps it over the
lines in a pool of processes; across machines, Ray or Dask would map the same function over
a corpus (``dask.bag.from_sequence(lines).map(partial(render_line, settings))``).

A file of a line is current when its record's key for it matches what would make it now: the
same model bytes, texts and options (the colour map counts for pictures and pages only). A
line whose files asked for are all current is done, and is skipped when the export runs
again; the index links only current files. A line drawn again, or that fails, loses its
files that are not current (they show another pair, or were drawn with other options).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.files import check_writable, write_all, write_atomically
from attnviz.maps import AttentionMaps
from attnviz.render import DATA_FORMATS
from attnviz.render.colors import DEFAULT_CMAP
from attnviz.sources import Request, Source, open_source, source_module
from attnviz.text import printable
from attnviz.version import __version__

FORMATS = ("png", "svg", "pdf", "npz", "json", "html")  # in the order the index lists them
IMAGE_FORMATS = ("png", "svg", "pdf")
RECORDS = ".attnviz-export"  # in the output folder: one small JSON record per finished line
INDEX = "index.html"
MAX_PAIRS_BYTES = 512 * 1024**2  # a pairs file is read whole, into memory
WAY_OUT = "write one pair a line: source<TAB>target, or the source alone to let the model " \
          "write the target"


@dataclass(frozen=True)
class Line:
    """One pair of the file. ``target`` None: the model writes it."""

    number: int  # 1-based, as an editor counts lines
    source: str
    target: str | None

    @property
    def stem(self) -> str:
        """The name of its files, without the suffix: the line number, 4 digits at least."""
        return f"{self.number:04d}"


@dataclass(frozen=True)
class Settings:
    """What every line is rendered with."""

    out_dir: Path
    formats: tuple[str, ...]  # some of FORMATS
    model: str | None = None  # as --model names it; None: the default model
    cmap: str = DEFAULT_CMAP
    seed: int = 0  # the random model's weights
    device: str = "cpu"
    use_cache: bool = True
    pairs_name: str = "pairs"  # the pairs file, as messages name it


@dataclass(frozen=True)
class Outcome:
    """What became of one line."""

    line: Line
    # format -> file name in out_dir: the line's current files (those asked for, and those of
    # other formats an earlier run made the same way), in the order of FORMATS
    files: dict[str, str] = field(default_factory=dict)
    skipped: bool = False  # done by an earlier run
    error: str | None = None  # why the line could not be rendered, one line
    warnings: tuple[str, ...] = ()
    target: str | None = None  # the target its files show; None: no files
    target_generated: bool = False  # written by the model


def read_lines(path: Path) -> list[Line]:
    """The pairs of a UTF-8 file, ``source<TAB>target`` or ``source`` alone a line; blank
    lines are skipped. Raises AttnvizError naming ``file:line`` of the first bad line (a line
    with two tabs, or no source), and how many more there are."""
    from attnviz.mapfile import open_regular

    name = printable(str(path))
    with open_regular(Path(path), "pairs file", WAY_OUT) as handle:
        data = handle.read(MAX_PAIRS_BYTES + 1)
    if len(data) > MAX_PAIRS_BYTES:
        raise AttnvizError(f"pairs file {name} is larger than {MAX_PAIRS_BYTES // 1024**2} MB; "
                           "split it into smaller files")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AttnvizError(f"{name}:{line}: the file is not UTF-8 text; save it as UTF-8"
                           ) from None
    from attnviz.train.pairs import check_characters

    check_characters(text, name)  # a NUL, an escape code: refused at its line, as by train
    lines, problems = [], []
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        source, _, target = raw.partition("\t")
        if "\t" in target:
            problems.append((number, f"{name}:{number}: more than one tab; {WAY_OUT}"))
        elif not source.strip():
            problems.append((number, f"{name}:{number}: the source is empty; {WAY_OUT}"))
        else:
            lines.append(Line(number, source, target if target.strip() else None))
    if problems:
        more = [number for number, _ in problems[1:]]
        raise AttnvizError(problems[0][1] + (f" (also bad: {line_numbers(more, 10)})"
                                             if more else ""))
    if not lines:
        raise AttnvizError(f"pairs file {name} holds no pairs; {WAY_OUT}")
    return lines


def line_numbers(numbers: Sequence[int], named: int = 5) -> str:
    """``line 3``, ``lines 3, 4, 9``, or ``lines 1, 2, 3, 4, 5 and 25 more``."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    rest = len(numbers) - named
    return f"lines {', '.join(map(str, numbers[:named]))}" + (f" and {rest} more" if rest > 0
                                                             else "")


def prepare(settings: Settings) -> None:
    """Check the options and make the output folder, before any work."""
    unknown = [fmt for fmt in settings.formats if fmt not in FORMATS]
    if unknown or not settings.formats:
        raise ValueError(f"formats must be some of {', '.join(FORMATS)}, got {unknown}")
    if any(fmt not in ("npz", "json") for fmt in settings.formats):
        from attnviz.render.colors import check

        check(settings.cmap)
    source = _opened(settings.model)  # an unknown model: refused before the folder is made
    if source_module(settings.model) == "own" and getattr(source, "path", None) is not None:
        from attnviz.modelfile import check_model_file

        check_model_file(source.path)  # missing, a folder: once, not on every line
    if settings.device != "cpu" and source_module(settings.model) != "saved":
        from attnviz.runtime import resolve_device

        resolve_device(settings.device)  # cuda without a GPU: once, not on every line
    folder = settings.out_dir
    if folder.exists() and not folder.is_dir():
        raise AttnvizError(f"output folder {printable(str(folder))} is a file; choose a folder")
    try:
        (folder / RECORDS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AttnvizError(f"cannot make the output folder {printable(str(folder))}: "
                           f"{exc.strerror}; choose another folder") from None
    check_writable(folder / INDEX)


def render_line(settings: Settings, line: Line) -> Outcome:
    """Trace one pair and write its files (every kind in each), unless an earlier run did.

    The unit of work: it depends on nothing but its arguments and the files it reads and
    writes, so any engine can map it over lines, in any order and on any machine that sees
    the output folder. A problem with the pair itself (an AttnvizError: a text too long for
    the model, say) is its outcome's ``error``; the files of one line are written whole or
    not at all, and its record last. Its files that are not current are removed first, so
    that neither the folder nor the index holds a file of another pair under its name.
    """
    source = _opened(settings.model)
    request = _request(settings, line)
    keys = _keys(source, request, settings)
    record = _read_record(settings, line)
    done = _current(record, keys)
    wanted = [fmt for fmt in settings.formats if fmt not in done]
    if not wanted:
        return _skipped(line, record, done)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from attnviz import cache

            trace = cache.traced(source, request, use_cache=settings.use_cache)
            contents = {settings.out_dir / f"{line.stem}.{fmt}": _file_bytes(trace.maps, fmt,
                                                                             settings.cmap)
                        for fmt in wanted}
        except AttnvizError as exc:
            _remove_stale(settings, line, record, done)
            error = f"{settings.pairs_name}:{line.number}: {exc}"
            return replace(_skipped(line, record, done), skipped=False, error=error)
    notes = tuple(dict.fromkeys([*trace.warnings, *(str(w.message) for w in caught
                                                     if _is_attnviz_warning(w))]))
    _remove_stale(settings, line, record, done)
    write_all(contents)
    files = _in_order({**done, **{fmt: f"{line.stem}.{fmt}" for fmt in wanted}})
    provenance = trace.maps.provenance
    write_atomically(_record_path(settings, line), json.dumps({
        "line": line.number, "source": line.source, "target": provenance.target_text,
        "target_generated": provenance.target_generated, "files": files,
        "keys": {fmt: keys[fmt] for fmt in files} if keys else {},
        "warnings": list(notes)}, ensure_ascii=False).encode("utf-8"))
    return Outcome(line, files, warnings=notes, target=provenance.target_text,
                   target_generated=provenance.target_generated)


def done_before(settings: Settings, line: Line) -> Outcome | None:
    """The outcome of a line an earlier run finished with these settings, or None. Cheap:
    without a record of the line, not even the model file is read."""
    if not _record_path(settings, line).is_file():
        return None
    record = _read_record(settings, line)
    done = _current(record, _keys(_opened(settings.model), _request(settings, line), settings))
    if any(fmt not in done for fmt in settings.formats):
        return None
    return _skipped(line, record, done)


def _request(settings: Settings, line: Line) -> Request:
    return Request(line.source, line.target, None, settings.seed, settings.device)


def _skipped(line: Line, record: dict | None, done: dict[str, str]) -> Outcome:
    """The outcome of a line whose current files ``done`` were made by an earlier run."""
    if not done or record is None:
        return Outcome(line, skipped=True)
    return Outcome(line, done, skipped=True, warnings=tuple(record.get("warnings", ())),
                   target=record.get("target"),
                   target_generated=bool(record.get("target_generated")))


def _in_order(files: dict[str, str]) -> dict[str, str]:
    return {fmt: files[fmt] for fmt in FORMATS if fmt in files}


def _file_bytes(maps: AttentionMaps, fmt: str, cmap: str) -> bytes:
    """One file of the maps: a picture of every kind (default layer, mean of heads), a page,
    or the numbers."""
    if fmt in IMAGE_FORMATS:
        from attnviz import views
        from attnviz.render import image

        return image.to_bytes(views.heatmaps(maps), fmt, cmap)
    if fmt == "html":
        from attnviz.render import page

        return page.to_bytes(maps, cmap)
    return maps.to_bytes(fmt)


def _found(settings: Settings, line: Line) -> Outcome:
    """A line's current files, from its record (none without one), whatever is asked."""
    if not _record_path(settings, line).is_file():
        return Outcome(line)
    record = _read_record(settings, line)
    keys = _keys(_opened(settings.model), _request(settings, line), settings)
    return _skipped(line, record, _current(record, keys))


def _is_attnviz_warning(caught: warnings.WarningMessage) -> bool:
    from attnviz.errors import AttnvizWarning

    return issubclass(caught.category, AttnvizWarning)


@functools.lru_cache(maxsize=4)
def _opened(model: str | None) -> Source:
    """The source of ``model``, opened once per process: it keeps what it has loaded."""
    return open_source(model)


def _keys(source: Source, request: Request, settings: Settings) -> dict[str, str] | None:
    """By format, a digest of everything that decides a line's file: the maps, and the
    colour map for a picture or a page (the numbers have none). None when the source cannot
    name its model's bytes: its lines are then never taken as done."""
    fingerprint = source.fingerprint(request)
    if fingerprint is None:
        return None
    data = {"maps": fingerprint, "version": __version__}
    drawn = {**data, "cmap": settings.cmap}
    return {fmt: hashlib.sha256(json.dumps(data if fmt in DATA_FORMATS else drawn,
                                           sort_keys=True).encode("utf-8")).hexdigest()
            for fmt in FORMATS}


def _record_path(settings: Settings, line: Line) -> Path:
    return settings.out_dir / RECORDS / f"{line.stem}.json"


def _read_record(settings: Settings, line: Line) -> dict | None:
    """The line's record, whatever made it, keeping only the files still there."""
    try:
        record = json.loads(_record_path(settings, line).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return None
    record["files"] = {fmt: name for fmt, name in record["files"].items()
                       if fmt in FORMATS and name == f"{line.stem}.{fmt}"
                       and (settings.out_dir / name).is_file()}
    if not isinstance(record.get("keys"), dict):
        record["keys"] = {}  # an older record: none of its files is current
    return record


def _current(record: dict | None, keys: dict[str, str] | None) -> dict[str, str]:
    """The files of ``record`` (format -> name) that its keys say were made as ``keys``
    would make them now, in the order of FORMATS."""
    if record is None or keys is None:
        return {}
    return _in_order({fmt: name for fmt, name in record["files"].items()
                      if record["keys"].get(fmt) == keys[fmt]})


def _remove_stale(settings: Settings, line: Line, record: dict | None,
                  current: dict[str, str]) -> None:
    """Remove the line's files that its record names and that are not ``current``, then say
    so in its record (or remove it, when nothing is left): an interrupt in between leaves a
    record that names files no longer there, which reading it drops."""
    if record is None:
        return
    stale = [name for fmt, name in record["files"].items() if fmt not in current]
    for name in stale:
        (settings.out_dir / name).unlink(missing_ok=True)
    path = _record_path(settings, line)
    if not current:
        path.unlink(missing_ok=True)
    elif stale:
        write_atomically(path, json.dumps({
            **record, "files": current, "keys": {fmt: record["keys"][fmt] for fmt in current}},
            ensure_ascii=False).encode("utf-8"))


@dataclass
class Summary:
    """The outcomes of a run, in the order the lines finished."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error]

    @property
    def skipped(self) -> int:
        return sum(outcome.skipped for outcome in self.outcomes)


def run(settings: Settings, lines: Sequence[Line], jobs: int = 1,
        report: Callable[[Outcome], None] = lambda outcome: None) -> Summary:
    """Render every line, ``jobs`` at a time, then write the index; ``report`` hears of each
    line as it finishes.

    ``jobs`` above 1: the first line is drawn here, which loads torch, the model and the
    renderer; then ``jobs`` worker processes draw the rest (when more than two lines are to
    draw; else all are drawn here). On Linux they are forked from this process, so each
    starts with all that loaded, where a fresh interpreter takes one to two seconds to
    import torch: longer than a hundred pages take to draw. A fork copies only the thread
    that makes it, and a lock that another thread held then would stay held in the copy for
    ever; so while this process runs Python threads of its own (the command's progress bar
    runs none), once it has used CUDA, and on other systems, the workers are spawned instead
    (see :func:`_fork_is_safe`): fresh interpreters, safe and slower. Each worker runs torch
    on one thread, whatever ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS`` say: the processes
    are the parallelism, more threads than cores make every process wait (see
    :func:`attnviz.runtime.choose_threads`), and in a fork of a process that has used
    OpenMP's threads, more than one hangs. With one job every line is drawn here, on the
    threads attnviz chooses for every command (one, or the variables').

    Ctrl-C, SIGTERM or SIGHUP stops the work at once: the lines not yet started are
    cancelled and the workers stopped, each removing the temporary files of the line it was
    drawing (a line's files are whole or absent, and its record comes after them). Every
    line finished by then is reported, even one whose worker was stopped before it could say
    so, and the index lists the same lines; the same command finishes the rest. A second
    Ctrl-C is held until this is done. The interrupt is the ending raised, even when the
    index cannot be written then.
    """
    summary = Summary()

    def finished(outcome: Outcome) -> None:
        summary.outcomes.append(outcome)
        report(outcome)

    try:
        todo = []
        for line in lines:
            before = done_before(settings, line)
            if before is None:
                todo.append(line)
            else:
                finished(before)
        if jobs > 1 and len(todo) > 2:
            finished(render_line(settings, todo[0]))  # loads what the workers then inherit
            _in_pool(settings, todo[1:], jobs, finished)
        else:
            for line in todo:
                finished(render_line(settings, line))
        write_index(settings, lines, summary.outcomes)  # interrupted, it is written below
    except BaseException:
        from attnviz.interrupt import held

        with held():  # a second Ctrl-C waits for the clean-up, then ends the process
            _report_finished(settings, lines, summary.outcomes, finished)
            # The index is a courtesy here: a full disk must not turn Ctrl-C (130) or a dead
            # worker into a message about the index.
            with contextlib.suppress(Exception):
                write_index(settings, lines, summary.outcomes)
        raise
    return summary


def _report_finished(settings: Settings, lines: Sequence[Line], reported: Sequence[Outcome],
                     finished: Callable[[Outcome], None]) -> None:
    """Report, as drawn by this run, each line not reported yet whose files are done: a worker
    stopped after writing a line's record, before its result reached this process."""
    told = {outcome.line.number for outcome in reported}
    for line in lines:
        if line.number not in told:
            with contextlib.suppress(Exception):  # a record that cannot be read: not done
                outcome = done_before(settings, line)
                if outcome is not None:
                    finished(replace(outcome, skipped=False))


STOP_GRACE = 5.0  # seconds a stopped worker has to remove its temporary files, before SIGKILL


def _start_pool(jobs: int):
    """``jobs`` worker processes: forked where :func:`_fork_is_safe`, else spawned. Forked
    ones all start at the first line submitted, before the pool starts threads of its own;
    spawned ones one by one as lines are submitted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if _fork_is_safe() else "spawn"
    with _quiet_resource_tracker():
        return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method),
                                   initializer=_start_worker, initargs=(os.getpid(),))


def _fork_is_safe() -> bool:
    """Whether a fork of this process may draw lines: on Linux, while this process runs one
    thread (see :func:`run`) and has not used CUDA, which a fork cannot use again ("Cannot
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
    from attnviz.interrupt import STOPPING

    stopping = set(STOPPING)
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)


def _in_pool(settings: Settings, lines: Sequence[Line], jobs: int,
             finished: Callable[[Outcome], None]) -> None:
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = _start_pool(min(jobs, len(lines)))
    try:
        with _signals_blocked():  # the workers start as lines are submitted
            futures = [pool.submit(_work, settings, line) for line in lines]
        for future in as_completed(futures):
            finished(future.result())
    except BrokenProcessPool:
        # The pool, then _stop, end the other workers with SIGTERM: only when every worker
        # ended by SIGTERM did someone send it (to one of them, or to all): stop as told.
        # (A worker _stop had to kill after the grace says nothing either way.)
        workers = _stop(pool)
        if workers and all(worker.exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM)
                           for worker in workers):
            from attnviz.interrupt import Terminated

            raise Terminated() from None
        raise AttnvizError("a worker process died (out of memory?); the lines done so far are "
                           "kept: run the export again, with fewer ⟨jobs⟩") from None
    except BaseException:
        from attnviz.interrupt import held

        with held():  # a second Ctrl-C must not leave the workers running
            _stop(pool)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _quiet_resource_tracker():
    """The pool's queues hold semaphores, which multiprocessing's resource tracker (a process
    started with the first of them) unlinks when this process ends without doing so itself,
    as an interrupted export does (it ends at once, see :mod:`attnviz.exits`). The tracker
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


_BUSY = False  # in a worker: whether it is drawing a line


def _work(settings: Settings, line: Line) -> Outcome:
    global _BUSY
    _BUSY = True
    try:
        return render_line(settings, line)
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
    from attnviz.interrupt import STOPPING
    from attnviz.runtime import one_thread

    one_thread()  # the processes are the parallelism (see run)
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
    from attnviz.interrupt import Terminated

    if _BUSY:
        raise Terminated()
    os._exit(128 + signum)  # waiting for a line: nothing to clean up, and no traceback


def write_index(settings: Settings, lines: Sequence[Line],
                outcomes: Sequence[Outcome] = ()) -> Path:
    """``index.html`` in the output folder: each line's texts and its current files, and why
    it failed. A line this run did not reach (``outcomes`` has none for it: the run was
    interrupted) gets the current files an earlier run made, from its record.

    Args:
        settings: the export's.
        lines: every line of the pairs file, as it is now.
        outcomes: what became of the lines this run reached.
    """
    from attnviz.render import index

    reached = {outcome.line.number: outcome for outcome in outcomes}
    entries = []
    for line in lines:
        outcome = reached.get(line.number) or _found(settings, line)
        shown = bool(outcome.files) and outcome.target is not None  # else the line's own
        entries.append(index.Entry(
            line.number, line.source, outcome.target if shown else line.target,
            bool(shown and outcome.target_generated), outcome.files, outcome.warnings,
            outcome.error))
    path = settings.out_dir / INDEX
    write_atomically(path, index.to_bytes(f"attnviz export of {settings.pairs_name}", entries))
    return path
