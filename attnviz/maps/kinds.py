"""The kinds of attention and their names (the maps' own, and the short ones the command
line, the Python API and the page use), the two measures a map may hold, and the formats
maps are saved in. It imports nothing, so the command line can build its options from it
without loading numpy."""

KINDS = ("encoder_self", "decoder_self", "cross")  # the maps' names, in drawing order
# The short names (``--kind self``), and the kind each names.
SHORT_NAMES = {"encoder": "encoder_self", "self": "decoder_self", "cross": "cross"}
# Every name of a kind (short or the maps' own), and the kind it names.
KIND_NAMES = {**SHORT_NAMES, **{kind: kind for kind in KINDS}}
FILE_FORMATS = ("npz", "json")  # maps (and an explanation) saved as numbers
TITLES = {
    "encoder_self": "Encoder self-attention",
    "decoder_self": "Masked decoder self-attention",
    "cross": "Cross-attention",
}

# What a map holds: the softmax weights α ("attention"), or the norm-based weights of
# Kobayashi et al. (2020), each key's share of its row's ‖α f(x)‖ ("norm"), and how a title
# says so after the kind's.
WEIGHTS = ("attention", "norm")
WEIGHT_TITLES = {"attention": "", "norm": " (norm-based: share of ‖α f(x)‖)"}
