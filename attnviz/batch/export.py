"""Many pairs at once: the maps of every line of a pairs file, drawn to files, and an index.

Each line is one independent task, :func:`render_line`: it traces its pair and draws its
files through the pipeline, as the command line does (:mod:`attnviz.flow.pipeline`), writes
them whole or not at all, then a small record saying what made them. :func:`run` maps it over
the lines in a pool of processes (:mod:`attnviz.batch.pool`); across machines, Ray or Dask
would map the same function over a corpus
(``dask.bag.from_sequence(lines).map(partial(render_line, settings))``).

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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.flow import pipeline
from attnviz.flow.formats import DATA_FORMATS
from attnviz.flow.formats import EXPORT_FORMATS as FORMATS
from attnviz.io.atomic import check_writable, remove_stale, write_all, write_atomically
from attnviz.io.pairs import Line, Skipped
from attnviz.io.text import printable
from attnviz.render.colors import DEFAULT_CMAP
from attnviz.sources import Request, Source, open_source, source_module
from attnviz.version import __version__

RECORDS = ".attnviz-export"  # in the output folder: one small JSON record per finished line
LOCK = "lock"  # in RECORDS: held by the one export writing the folder (see run)
INDEX = "index.html"


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


def prepare(settings: Settings) -> None:
    """Check the options and make the output folder, before any work."""
    unknown = [fmt for fmt in settings.formats if fmt not in FORMATS]
    if unknown or not settings.formats:
        raise AttnvizError(f"formats must be some of {', '.join(FORMATS)}, got "
                           f"{printable(repr(unknown))}")
    pipeline.check_colors(settings.formats, settings.cmap)
    source = _opened(settings.model)  # an unknown model: refused before the folder is made
    if source_module(settings.model) == "own" and getattr(source, "path", None) is not None:
        from attnviz.model.modelfile import check_model_file

        check_model_file(source.path)  # missing, a folder: once, not on every line
    if settings.device != "cpu" and source_module(settings.model) != "saved":
        from attnviz.model.runtime import resolve_device

        resolve_device(settings.device)  # cuda without a GPU: once, not on every line
    folder = settings.out_dir
    if folder.exists() and not folder.is_dir():
        raise AttnvizError(f"output folder {printable(str(folder))} is a file; choose a folder")
    if folder.is_symlink() and not folder.exists():
        raise AttnvizError(f"output folder {printable(str(folder))} is a link to "
                           f"{printable(os.readlink(folder))}, which does not exist; make that "
                           "folder, or choose another ⟨out_dir⟩")
    if (folder / INDEX).is_dir():
        raise AttnvizError(f"{printable(str(folder / INDEX))} is a folder, where the export's "
                           "index goes; move it away, or choose another ⟨out_dir⟩")
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
    in_the_way = [settings.out_dir / f"{line.stem}.{fmt}" for fmt in wanted
                  if (settings.out_dir / f"{line.stem}.{fmt}").is_dir()]
    if in_the_way:  # the line's to fix, not the export's: the other lines go on
        _remove_stale(settings, line, record, done)
        error = (f"{settings.pairs_name}:{line.number}: {printable(str(in_the_way[0]))} is a "
                 f"folder, where the line's {in_the_way[0].suffix} file goes; move it away, or "
                 "export into another folder")
        return replace(_skipped(line, record, done), skipped=False, error=error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            maps = pipeline.trace(source, request, cache=settings.use_cache)
            plan = pipeline.plan(maps, pipeline.View())  # every kind: default layer, mean
            contents = {settings.out_dir / f"{line.stem}.{fmt}":
                        pipeline.to_bytes(maps, plan, fmt, settings.cmap) for fmt in wanted}
        except AttnvizError as exc:
            _remove_stale(settings, line, record, done)
            error = f"{settings.pairs_name}:{line.number}: {exc}"
            return replace(_skipped(line, record, done), skipped=False, error=error)
    notes = tuple(dict.fromkeys(str(w.message) for w in caught
                                if issubclass(w.category, AttnvizWarning)))
    _remove_stale(settings, line, record, done)
    write_all(contents)
    files = _in_order({**done, **{fmt: f"{line.stem}.{fmt}" for fmt in wanted}})
    provenance = maps.provenance
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


def _found(settings: Settings, line: Line) -> Outcome:
    """A line's current files, from its record (none without one), whatever is asked."""
    if not _record_path(settings, line).is_file():
        return Outcome(line)
    record = _read_record(settings, line)
    keys = _keys(_opened(settings.model), _request(settings, line), settings)
    return _skipped(line, record, _current(record, keys))


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
        report: Callable[[Outcome], None] = lambda outcome: None,
        skipped: Sequence[Skipped] = ()) -> Summary:
    """Render every line, ``jobs`` at a time, then write the index; ``report`` hears of each
    line as it finishes. ``skipped``: the bad lines of the pairs file left out (see
    :func:`attnviz.io.pairs.read_pairs_skipping`), which the index lists with why.

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
    :func:`attnviz.model.runtime.choose_threads`), and in a fork of a process that has used
    OpenMP's threads, more than one hangs. With one job every line is drawn here, on the
    threads attnviz chooses for every command (one, or the variables').

    Ctrl-C, SIGTERM or SIGHUP stops the work at once: the lines not yet started are
    cancelled and the workers stopped, each removing the temporary files of the line it was
    drawing (a line's files are whole or absent, and its record comes after them). Every
    line finished by then is reported, even one whose worker was stopped before it could say
    so, and the index lists the same lines; the same command finishes the rest. A second
    Ctrl-C is held until this is done. The interrupt is the ending raised, even when the
    index cannot be written then.

    The folder has one writer at a time (see :func:`one_writer`): an export started while
    another writes it is refused. ``jobs`` beyond the cores this process may use is cut to
    them, with a warning (see :func:`attnviz.batch.pool.capped`).
    """
    from attnviz.batch.pool import capped

    jobs = capped(jobs)
    with one_writer(settings):
        # Temporary files that a killed export left: all of them among the records, which
        # only an export writes, and this one alone now; the stale ones beside the files
        # (where another command may be writing one now).
        remove_stale(settings.out_dir / RECORDS, every=True)
        remove_stale(settings.out_dir)
        return _run(settings, lines, jobs, report, skipped)


@contextlib.contextmanager
def one_writer(settings: Settings):
    """The output folder to this export alone, while the block runs: two exports at once
    into one folder (another model, say) would each write a line's file and its record, and
    a file could end up beside the other's record, taken as current by the next run and
    linked from the index under the other's texts. The second is refused, at once.

    Raises:
        AttnvizError: another export is writing the folder, or the lock cannot be made.
    """
    from attnviz.io.lock import Busy, held

    folder = printable(str(settings.out_dir))
    lock = contextlib.ExitStack()
    try:  # what the block raises is its own: only the taking of the lock is worded here
        (settings.out_dir / RECORDS).mkdir(parents=True, exist_ok=True)
        lock.enter_context(held(settings.out_dir / RECORDS / LOCK))
    except Busy as busy:
        who = f" (process {busy.pid})" if busy.pid else ""
        raise AttnvizError(f"output folder {folder} is being written by another export{who}; "
                           "wait until it ends, or choose another ⟨out_dir⟩") from None
    except OSError as exc:
        raise AttnvizError(f"cannot lock the output folder {folder}: {exc.strerror}; choose "
                           "another ⟨out_dir⟩") from None
    with lock:
        yield


def _run(settings: Settings, lines: Sequence[Line], jobs: int,
         report: Callable[[Outcome], None], skipped: Sequence[Skipped]) -> Summary:
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
            from attnviz.batch.pool import map_unordered

            finished(render_line(settings, todo[0]))  # loads what the workers then inherit
            map_unordered(functools.partial(render_line, settings), todo[1:], jobs, finished,
                          kept="the lines done so far are kept: run the export again, with "
                               "fewer ⟨jobs⟩")
        else:
            for line in todo:
                finished(render_line(settings, line))
        write_index(settings, lines, summary.outcomes, skipped)  # interrupted: see below
    except BaseException:
        from attnviz.io.signals import held

        with held():  # a second Ctrl-C waits for the clean-up, then ends the process
            _report_finished(settings, lines, summary.outcomes, finished)
            # The index is a courtesy here: a full disk must not turn Ctrl-C (130) or a dead
            # worker into a message about the index.
            with contextlib.suppress(Exception):
                write_index(settings, lines, summary.outcomes, skipped)
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


def write_index(settings: Settings, lines: Sequence[Line],
                outcomes: Sequence[Outcome] = (), skipped: Sequence[Skipped] = ()) -> Path:
    """``index.html`` in the output folder: each line's texts and its current files, and why
    it failed. A line this run did not reach (``outcomes`` has none for it: the run was
    interrupted) gets the current files an earlier run made, from its record.

    Args:
        settings: the export's.
        lines: every line of the pairs file, as it is now.
        outcomes: what became of the lines this run reached.
        skipped: the bad lines left out, listed with why.
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
    entries += [index.Entry(bad.number, bad.text, "", False, {},
                            error=f"skipped: {bad.reason}") for bad in skipped]
    entries.sort(key=lambda entry: entry.number)
    path = settings.out_dir / INDEX
    write_atomically(path, index.to_bytes(f"attnviz export of {settings.pairs_name}", entries))
    return path
