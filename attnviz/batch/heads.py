"""The heads over a corpus: the figures of every head on every line of a pairs file, and
their means over the lines (with the spread between them).

Each line is one independent task, :func:`measure_line`: it traces its pair through the
pipeline, as ``attnviz heads TEXT`` does (:mod:`attnviz.flow.pipeline`), and measures its
heads (:mod:`attnviz.maps.heads`). :func:`run` maps it over the lines: here, in ``jobs``
worker processes (:func:`attnviz.batch.pool.map_unordered`, as export does), or on a Dask
cluster (:func:`attnviz.batch.cluster.map_on_cluster`). The lines are combined in their
order (:func:`attnviz.maps.atlas.combine`), so the atlas is the same whatever ran them.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.flow import pipeline
from attnviz.io.pairs import Line
from attnviz.maps.atlas import Atlas, combine
from attnviz.maps.data import Provenance
from attnviz.maps.heads import Figures, measure
from attnviz.sources import Request, Source, open_source
from attnviz.sources.base import Repeated


@dataclass(frozen=True)
class Settings:
    """What every line is measured with."""

    model: str | None = None  # as --model names it; None: the default model
    weights: str = "attention"  # what the maps hold (see attnviz.maps.kinds.WEIGHTS)
    seed: int = 0  # the random model's weights
    device: str = "cpu"
    use_cache: bool = True
    pairs_name: str = "pairs"  # the pairs file, as messages name it


@dataclass(frozen=True)
class Measured:
    """What became of one line: its heads' figures, or why it could not be measured."""

    line: Line
    figures: dict[str, Figures] | None = None  # by kind; None: the line failed
    error: str | None = None  # one line
    warnings: tuple[str, ...] = ()
    provenance: Provenance | None = None  # of the line's maps


@dataclass
class Corpus:
    """The outcomes of a run, in line order, and the atlas of the lines measured (None when
    none was)."""

    measured: list[Measured] = field(default_factory=list)
    atlas: Atlas | None = None

    @property
    def failed(self) -> list[Measured]:
        return [outcome for outcome in self.measured if outcome.error]


def measure_line(settings: Settings, line: Line) -> Measured:
    """Trace one pair and measure its heads: the unit of work. It depends on nothing but its
    arguments and the files it reads, so any engine can map it over lines, in any order and
    on any machine that sees the model. A problem with the pair (an AttnvizError: a text too
    long for the model, say) is its outcome's ``error``.

    Its warnings are kept with its outcome where it runs on a process's main thread (here,
    or in a worker process); in a thread of someone else's pool (a Dask worker's), where
    catching warnings would disturb the other threads, they are left to that process.
    """
    source = _opened(settings.model)
    request = Request(line.source, line.target, None, settings.seed, settings.device,
                      weights=settings.weights)
    catching = threading.current_thread() is threading.main_thread()
    with warnings.catch_warnings(record=True) if catching else nullcontext() as caught:
        if catching:
            warnings.simplefilter("always")
        try:
            maps = pipeline.trace(source, request, cache=settings.use_cache)
        except AttnvizError as exc:
            return Measured(line, error=f"{settings.pairs_name}:{line.number}: {exc}")
    notes = tuple(dict.fromkeys(str(w.message) for w in caught or ()
                                if issubclass(w.category, AttnvizWarning)))
    return Measured(line, measure(maps), None, notes, maps.provenance)


def run(settings: Settings, lines: Sequence[Line], *, jobs: int = 1, scheduler: str | None = None,
        induction: Repeated | None = None,
        report: Callable[[Measured], None] = lambda outcome: None) -> Corpus:
    """Measure every line, ``jobs`` at a time or on the Dask cluster at ``scheduler``, then
    combine them; ``report`` hears of each line as it finishes. With ``induction``, the
    model's induction score is measured once, here, on that repeated random sequence (the
    random model builds its vocabulary from the first line, as for it).

    With ``jobs`` above 1 (and more than two lines), the first line is measured here, which
    loads torch and the model, then worker processes measure the rest, forked where that is
    safe (see :func:`attnviz.batch.export.run`, which does the same). Ctrl-C stops the work
    at once; nothing is written.
    """
    done: list[Measured] = []

    def finished(outcome: Measured) -> None:
        done.append(outcome)
        report(outcome)

    work = functools.partial(measure_line, settings)
    if scheduler is not None:
        from attnviz.batch.cluster import map_on_cluster

        map_on_cluster(work, lines, scheduler, finished)
    elif jobs > 1 and len(lines) > 2:
        from attnviz.batch.pool import map_unordered

        finished(work(lines[0]))  # loads what the workers then inherit
        map_unordered(work, lines[1:], jobs, finished)
    else:
        for line in lines:
            finished(work(line))
    measured = sorted(done, key=lambda outcome: outcome.line.number)
    good = [outcome for outcome in measured if outcome.figures is not None]
    if not good:
        return Corpus(measured)
    repeated = None
    if induction is not None:
        first = lines[0]
        repeated = pipeline.trace(_opened(settings.model), Request(
            first.source, first.target, None, settings.seed, settings.device,
            weights=settings.weights, repeated=induction), cache=settings.use_cache)
    try:
        atlas = combine([outcome.figures for outcome in good], _corpus(good[0].provenance),
                        settings.pairs_name, repeated)
    except ValueError as exc:
        raise AttnvizError(f"{settings.pairs_name}: {exc}") from None
    return Corpus(measured, atlas)


def _corpus(provenance: Provenance) -> Provenance:
    """The provenance of a corpus's atlas: the model's, the version, the options; no text."""
    return replace(provenance, source_text=None, target_text=None, target_generated=False,
                   next_token=None, source_written={}, target_written={})


@functools.lru_cache(maxsize=4)
def _opened(model: str | None) -> Source:
    """The source of ``model``, opened once per process: it keeps what it has loaded."""
    return open_source(model)
