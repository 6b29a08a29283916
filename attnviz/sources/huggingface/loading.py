"""Loading a Hugging Face model quietly: transformers' logs, warnings and progress bars are
not the person's business, and its loading errors become one line that names the model and
the way out."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten

INSTALL = ('Hugging Face models need the extra: pip install -e ".[hf]" in a clone of attnviz, '
           'pip install "attnviz[hf]" beside an installed attnviz')
MESSAGE_CHARS = 160  # the part of transformers' own message quoted in ours


def import_transformers() -> None:
    try:
        import transformers  # noqa: F401 - the check is the import
    except ImportError:
        raise AttnvizError(INSTALL) from None


@contextlib.contextmanager
def quiet(progress: bool) -> Iterator[None]:
    """transformers' and the hub's log lines and warnings (unused weights, generation
    defaults, retried requests) are not the person's business: the one line attnviz says
    about a failure is. All restored afterwards. ``progress=False`` also hides progress bars
    (loading a local folder's weights); a hub download keeps them."""
    from huggingface_hub import utils as hub_utils
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    verbosity, hub_verbosity = hf_logging.get_verbosity(), hub_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_logging.set_verbosity_error()
        hub_logging.set_verbosity_error()
        if not progress:
            hf_logging.disable_progress_bar()  # transformers' bars and the hub's
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            hub_logging.set_verbosity(hub_verbosity)
            if not progress and bars:
                hf_logging.enable_progress_bar()
            if not progress and not hub_bars:
                hub_utils.disable_progress_bars()


@contextlib.contextmanager
def loading(name: str, what: str, from_hub: bool) -> Iterator[None]:
    """transformers' loading errors as one line that names the model and the way out."""
    try:
        yield
    except AttnvizError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers reads files nobody vouches for
        message = str(exc) or type(exc).__name__
        name = printable(name)
        if "trust_remote_code" in message or "custom code" in message:
            raise AttnvizError(f"{name} needs its own Python code to load (trust_remote_code), "
                               "and attnviz never runs a model's own code; use a model that "
                               "transformers supports itself") from None
        if what == "weights" and "safetensors" in message:
            raise AttnvizError(f"{name} has no safetensors weights, and attnviz never loads "
                               "pickled ones; use a model published with safetensors, or save "
                               "it again with save_pretrained") from None
        if "above report" in message:  # transformers' report, which quiet() keeps off stderr
            problem = ("its weights do not have the sizes its config.json gives"
                       if "mismatched_sizes" in message else
                       "its weights could not be converted to the model its config.json gives")
            raise AttnvizError(f"cannot load {name}: {problem} (an edited config, or the "
                               "weights of another model); give a folder written by "
                               "save_pretrained") from None
        said = printable(shorten(" ".join(message.split()), MESSAGE_CHARS))

        if not from_hub:
            way_out = "give a folder written by save_pretrained"
        elif os.environ.get("HF_HUB_OFFLINE"):
            way_out = ("HF_HUB_OFFLINE is set, and the model is not in the hub's cache here: "
                       "download it where there is network, or give a folder written by "
                       "save_pretrained")
        else:
            way_out = ("check the name and the network (or set HF_HUB_OFFLINE=1 to use the "
                       "cache alone), or give a folder written by save_pretrained")
        raise AttnvizError(f"cannot load {name}{f' ({what})' if what else ''}: {said}; "
                           f"{way_out}") from None
