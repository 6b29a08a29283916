"""Where and how the model runs: the torch device a ``device`` name means."""

from __future__ import annotations

import torch

from attnviz.errors import AttnvizError


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when present, else cpu) as a torch device."""
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
