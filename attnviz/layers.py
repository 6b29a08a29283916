"""The layers of attnviz, lowest first: a module may import modules of its own folder and of
the layers below, never one above, nor another folder of its own layer. ``tests/test_seam.py``
holds the code to this list (it reads every import).

    errors, version      what everything may say: the one error, the one warning, the version
    io                   what crosses the edge: files written whole, files read safely, the
                         pairs file, printable text, signals held while files are renamed
    model, maps          attnviz's own model (the formula, the transformer, its files), and
                         attention maps as numpy data with what is computed from them alone
    sources, render      what turns a request into maps (own model, saved maps, Hugging
                         Face, the cache), and what draws maps (images, GIF, terminal, page)
    flow                 the pipeline: the one way from a request to its outputs
    batch, train         many requests at once (export); training and evaluation
    api                  the Python face
    cli                  the command: options, commands, words, and how a process ends
    __main__, __init__   ``python -m attnviz``, and the package's face (its public names)
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "version", "layers"),
    ("io",),
    ("model", "maps"),
    ("sources", "render"),
    ("flow",),
    ("batch", "train"),
    ("api",),
    ("cli",),
    ("__main__", "__init__"),
)
