"""What of a forward pass's attention is kept: which kinds, layers and heads, in which
precision. A source that records maps layer by layer (a Hugging Face model) stores only
these; the other layers are computed and let go."""

from __future__ import annotations

from dataclasses import dataclass

from attnviz.errors import AttnvizError
from attnviz.maps.choice import is_integer, shown
from attnviz.maps.kinds import KINDS

# The precisions maps may be kept in, and the bytes of one weight. bfloat16 is not among
# them: numpy has no such type (an npz could not hold it), and its 8-bit mantissa gives a
# weight to ±0.4%, coarser than the page's 8 bits of each row's largest weight.
PRECISIONS = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class Keep:
    """The part of the maps to keep, in the library's words (``--layer``, ``--head`` and
    ``--precision`` on the command line). None: every one."""

    kinds: tuple[str, ...] | None = None  # in KINDS' names
    layers: tuple[int, ...] | None = None  # the model's numbers, counting from 0
    heads: tuple[int, ...] | None = None
    precision: str = "float32"  # one of PRECISIONS

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise AttnvizError(f"precision {shown(self.precision)} is not one attnviz keeps "
                               f"maps in: use {' or '.join(PRECISIONS)}", setting="precision")
        for name, values in (("layer", self.layers), ("head", self.heads)):
            if values is not None and (not values or not all(
                    is_integer(v) and v >= 0 for v in values)):
                raise AttnvizError(f"the {name}s to keep, {shown(values)}, must be indices "
                                   f"(0, 1, ...) given as \u27e8{name}\u27e9", setting=name)
        if self.kinds is not None and not set(self.kinds) <= set(KINDS):
            raise AttnvizError(f"kinds {shown(self.kinds)} to keep must be among "
                               f"{', '.join(KINDS)}", setting="kind")

    @property
    def everything(self) -> bool:
        """Whether every kind, layer and head is kept."""
        return self.kinds is None and self.layers is None and self.heads is None

    def wants(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def layers_of(self, count: int) -> list[int]:
        """The layers kept of a stack of ``count`` layers."""
        return list(range(count)) if self.layers is None else list(self.layers)

    def heads_of(self, count: int) -> list[int]:
        """The heads kept of a layer of ``count`` heads."""
        return list(range(count)) if self.heads is None else list(self.heads)

    @property
    def itemsize(self) -> int:
        return PRECISIONS[self.precision]
