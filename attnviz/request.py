"""What a person asked to see: ``attnviz encode`` or ``decode`` of some text with some model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

COMMANDS = ("encode", "decode")


@dataclass(frozen=True)
class Request:
    """Everything that decides the attention maps of one run (and nothing that only draws)."""

    command: str  # "encode": the encoder only; "decode": the whole model
    text: str  # the source sentence
    target: str | None = None  # decode: the target; None lets the model write one
    model: str | None = None  # a shipped name, "random", or a path; None: the default
    seed: int = 0  # the weights of the random model
    device: str = "cpu"  # cpu, cuda or auto

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"command must be one of {COMMANDS}, got {self.command!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
