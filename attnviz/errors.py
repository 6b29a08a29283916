"""The one exception for problems a person can cause and fix, and the one warning."""

from __future__ import annotations

from collections.abc import Mapping


class AttnvizError(Exception):
    """A problem with the user's input, files or options.

    The message names the problem and the way out, in one line; the CLI prints it
    to stderr without a traceback and exits with a non-zero code.

    Args:
        message: the line a person reads.
        setting: the setting the message is about, when it starts with its name ("layer",
            "head", "target", ...): the library speaks of a layer, the CLI of ``--layer``,
            and :meth:`worded` puts the CLI's word in its place.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with its setting called by the name ``names`` gives it (a flag)."""
        message = str(self)
        if self.setting in names and message.startswith(self.setting):
            return names[self.setting] + message[len(self.setting):]
        return message


class AttnvizWarning(UserWarning):
    """Something a person should know about a result that is still drawn (an unknown word,
    a glyph the fonts lack). The library warns with :func:`warnings.warn`; the CLI prints each
    such warning once, as one line on stderr."""
