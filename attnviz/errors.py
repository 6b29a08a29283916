"""The one exception for problems a person can cause and fix."""


class AttnvizError(Exception):
    """A problem with the user's input, files or options.

    The message names the problem and the way out, in one line; the CLI prints it
    to stderr without a traceback and exits with a non-zero code.
    """


class AttnvizWarning(UserWarning):
    """Something a person should know about a result that is still drawn (an unknown word,
    a glyph the fonts lack). The library warns with :func:`warnings.warn`; the CLI prints each
    such warning once, as one line on stderr."""
