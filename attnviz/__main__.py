"""Lets ``python -m attnviz`` run the same CLI as the ``attnviz`` command."""

from attnviz.cli.entry import main

if __name__ == "__main__":
    main()
