"""Where and how the model runs: the torch device a ``device`` name means, and how many CPU
threads torch uses.

No torch at import: the CLI checks a thread count without paying for torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attnviz.errors import AttnvizError

if TYPE_CHECKING:
    import torch

# The variables torch reads its thread count from at start-up; when both are set, torch
# takes MKL_NUM_THREADS (ATen's intraop_default_num_threads reads OMP first, then MKL).
THREAD_VARIABLES = ("MKL_NUM_THREADS", "OMP_NUM_THREADS")
MAX_THREADS = 1024  # a typo guard: torch would try to start that many threads


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when present, else cpu) as a torch device."""
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if name == "auto":
            return torch.device("cpu")
        raise AttnvizError("device cuda was asked for, but torch sees no CUDA GPU here; use "
                           "cpu (or auto)", setting="device")
    raise AttnvizError(f"device {name!r} is unknown; use cpu, cuda or auto", setting="device")


@dataclass(frozen=True)
class Work:
    """The size of one forward pass, as far as the thread count is concerned.

    Args:
        width: D, the model width.
        batch: B, the sequences computed together.
        longest: the longest sequence, in tokens (source or target).
        training: whether this is training, whose result must not depend on threads.
    """

    width: int
    batch: int
    longest: int
    training: bool = False

    @property
    def multiply_adds(self) -> int:
        """Multiply-adds of one layer, about: per token, the four projections of attention
        (4 D^2) and the feed-forward layer (8 D^2, at d_ff = 4 D), and the attention weights
        and their mix of values (2 x longest x D)."""
        tokens = self.batch * self.longest
        return tokens * (12 * self.width ** 2 + 2 * self.longest * self.width)


def threads_from_environment(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count the person set in ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS``, read
    as torch reads it (a positive integer, MKL's first); None when neither is set so.

    torch ignores (with a warning) a value that is not a positive integer, and so does this.
    """
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        # torch parses with std::stoi: leading spaces, a sign, digits; the rest is ignored
        # ("4,2", a nested OpenMP list, means 4).
        found = re.match(r"\s*([+-]?\d+)", environ.get(name, ""))
        if found and 0 < int(found.group(1)) < 2**31:
            return int(found.group(1))
    return None


def choose_threads(requested: int | None, work: Work,
                   environ: Mapping[str, str] | None = None) -> int:
    """How many CPU threads torch should use for ``work``.

    The first that applies: ``requested`` (the person asked); ``MKL_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` (the person asked, torch's way); otherwise one thread. attnviz's
    models are small: torch's default of a thread per core only makes them slower, and
    several times slower beside one busy process (see benchmarks/load.py). Training always
    gets one, so that a retrained model has the same bytes whatever the machine.

    Args:
        requested: the thread count asked for, or None to choose.
        work: what will be computed.
        environ: the environment to read (default: ``os.environ``).

    Raises:
        AttnvizError: ``requested`` is below 1 or above ``MAX_THREADS``.
    """
    if requested is not None:
        if not 1 <= requested <= MAX_THREADS:
            raise AttnvizError(f"the thread count must be between 1 and {MAX_THREADS}, got "
                               f"{requested}; 1 is best for attnviz's own models")
        return requested
    chosen = threads_from_environment(environ)
    if chosen is not None:
        return chosen
    return 1


@contextmanager
def using_threads(count: int) -> Iterator[None]:
    """torch computes with ``count`` threads inside the block; the count before is restored.

    Only torch's intra-op pool is sized: attnviz never uses the inter-op pool
    (``torch.jit.fork``), which stays unstarted.
    """
    import torch

    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
