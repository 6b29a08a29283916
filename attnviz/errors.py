"""The one exception for problems a person can cause and fix, and the one warning."""

from __future__ import annotations

import re
from collections.abc import Mapping

SETTING = re.compile("\u27e8(\\w+)\u27e9")  # ⟨name⟩: a setting named in a message
# What the library calls the settings whose keyword is not their name in a message.
LIBRARY_NAMES = {"encode": "part='encoder'", "decode": "part='decoder'", "output": "save"}


class AttnvizError(Exception):
    """A problem with the user's input, files or options.

    The message names the problem and the way out, in one line; the CLI prints it
    to stderr without a traceback and exits with a non-zero code.

    The library and the command line call a setting by different names: the library by its
    keyword (``learning_rate``), the command line by its flag (``--lr``). A message names a
    setting as ``⟨learning_rate⟩``; ``str()`` shows the keyword, :meth:`worded` the flag.

    Args:
        message: the line a person reads, settings written ``⟨name⟩``.
        setting: the setting a message is about when it starts with its plain name
            ("layer 5 is out of range"): the same as writing ``⟨layer⟩ 5 is out of range``.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        if setting is not None and message.startswith(setting):
            message = f"\u27e8{setting}\u27e9{message[len(setting):]}"
        super().__init__(message)
        self.setting = setting

    def __str__(self) -> str:
        return self.worded(LIBRARY_NAMES)

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each setting called by the name ``names`` gives it (its flag),
        or by its own name when ``names`` has none."""
        return SETTING.sub(lambda match: names.get(match[1], match[1]), self.args[0])


class AttnvizWarning(UserWarning):
    """Something a person should know about a result that is still drawn (an unknown word,
    a glyph the fonts lack). The library warns with :func:`warnings.warn`; the CLI prints each
    such warning once, as one line on stderr."""
