"""The ``attnviz`` command: :mod:`.app` holds the commands; :mod:`.entry` starts the process.

Nothing is imported here: the entry point must set its Ctrl-C handler before typer loads.
"""
