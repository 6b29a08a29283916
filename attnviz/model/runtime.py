"""Where and how the model runs: the torch device a ``device`` name means, and how many CPU
threads torch uses.

No torch at import: the CLI checks a thread count without paying for torch.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from attnviz.errors import AttnvizError

if TYPE_CHECKING:
    import torch

# The variables torch takes its thread count from (through MKL, which also caps the count
# at one thread per core); MKL_NUM_THREADS first.
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


def threads_set_in(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the person set ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS`` to a count torch
    takes: a positive integer (torch warns about any other value, and ignores it).

    Args:
        environ: the environment to read (default: ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        # Read as std::stoi reads it: leading spaces, a sign, digits; "4,2" (an OpenMP list
        # for nested regions) means 4.
        found = re.match(r"\s*([+-]?\d+)", environ.get(name, ""))
        if found and 0 < int(found.group(1)) < 2**31:
            return True
    return False


def choose_threads(requested: int | None = None,
                   environ: Mapping[str, str] | None = None) -> int | None:
    """How many CPU threads torch should use: ``requested`` if given; None, meaning torch's
    own count, when ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS`` is set (torch has read it);
    else one.

    One, whatever the model's size. Measured on 2 cores (``python benchmarks/load.py
    --sizes``): a second thread makes a training step or a forward pass 1.5 to 1.8 times
    faster on an idle machine (widths 128 to 512, and the shipped models' batches of 256
    examples), but 1.5 to 2.5 times slower beside one busy process: each of torch's many
    short parallel regions waits for the thread that the other process holds. Over a whole
    ``attnviz eval`` of the shipped translate model, two threads save a tenth idle and take
    1.9 times as long beside a busy process, where one thread takes the same time. One
    thread also gives a trained model the same bytes whatever the number of cores (two
    threads sum LayerNorm's weight gradients in another order). Whoever wants the idle
    speed asks.

    Args:
        requested: the thread count asked for (``--threads``), or None to choose.
        environ: the environment to read (default: ``os.environ``).

    Raises:
        AttnvizError: ``requested`` is below 1 or above ``MAX_THREADS``.
    """
    if requested is not None:
        if not 1 <= requested <= MAX_THREADS:
            raise AttnvizError(f"the thread count must be between 1 and {MAX_THREADS}, got "
                               f"{requested}")
        return requested
    return None if threads_set_in(environ) else 1


def one_thread(environ: MutableMapping[str, str] | None = None) -> None:
    """Make torch compute on one thread in this process, whatever the thread variables say:
    for a process that is one of many working at once (an export's worker).

    Every variable of ``THREAD_VARIABLES`` is set to 1, not only ``OMP_NUM_THREADS``: torch
    takes ``MKL_NUM_THREADS`` first. Through the environment, so that a process that never
    needs torch never imports it; a torch already imported is set directly.

    Args:
        environ: the environment to change (default: ``os.environ``, which torch reads when
            it is imported).
    """
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@contextmanager
def using_threads(count: int | None) -> Iterator[None]:
    """torch computes with ``count`` threads inside the block (None: as many as it has);
    the count before is restored.

    Only torch's intra-op pool is sized: attnviz never uses the inter-op pool
    (``torch.jit.fork``), which stays unstarted.
    """
    import torch

    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
