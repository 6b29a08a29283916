"""The source seam: any source's maps reach every renderer, and the imports run one way."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import attnviz
from attnviz import sources
from attnviz.cli.app import app
from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.layers import LAYERS
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.keep import Keep
from attnviz.sources import Request
from tests.conftest import SOURCE

PACKAGE = Path(attnviz.__file__).parent
runner = CliRunner()


class EchoSource:
    """A fourth source: every token attends to itself, as an ONNX model might say."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Request] = []

    def fingerprint(self, request: Request) -> str | None:
        return None

    def maps(self, request: Request) -> AttentionMaps:
        self.requests.append(request)
        tokens = request.text.split()
        eye = np.eye(len(tokens), dtype=np.float32)[None, None]  # (1, 1, S, S)
        maps = AttentionMaps(tokens, [], encoder_self=np.repeat(eye, 2, axis=1),
                             provenance=Provenance(model=self.name))
        warnings.warn("echo says hello", AttnvizWarning, stacklevel=2)
        return maps


@pytest.fixture
def echo_source(monkeypatch):
    """Registers `echo:NAME` as a source: a module and one registry line, nothing else."""
    opened: list[EchoSource] = []
    module = types.ModuleType("attnviz.sources.echo")

    def open_echo(name: str) -> EchoSource:
        opened.append(EchoSource(name))
        return opened[-1]

    module.open = open_echo
    monkeypatch.setitem(sys.modules, "attnviz.sources.echo", module)
    monkeypatch.setattr(sources, "SOURCES", [(lambda n: n.startswith("echo:"), "echo"),
                                             *sources.SOURCES])
    return opened


def test_a_fourth_source_is_drawn_by_every_renderer(echo_source, tmp_path):
    outputs = [tmp_path / f"echo.{suffix}" for suffix in ("png", "svg", "pdf", "npz", "json")]
    args = ["encode", "one two three", "-m", "echo:x"]
    for path in outputs:
        args += ["-o", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "warning: echo says hello" in result.stderr
    assert echo_source[0].requests == [Request("one two three", None, "encoder", 0, "cpu",
                                               keep=Keep(("encoder_self",)))]
    with Image.open(outputs[0]) as picture:
        assert picture.format == "PNG" and picture.size[0] > 300
    assert b"three" in outputs[1].read_bytes()
    assert outputs[2].read_bytes().startswith(b"%PDF")
    for path in outputs[3:]:
        back = AttentionMaps.load(path)
        assert back.source_tokens == ["one", "two", "three"]
        assert np.array_equal(back.encoder_self[0, 0], np.eye(3))
        assert back.provenance.model == "echo:x"
    terminal = runner.invoke(app, ["encode", "one two three", "-m", "echo:x", "--head", "1"])
    assert terminal.exit_code == 0
    assert "Encoder self-attention · layer 0 · head 1" in terminal.stdout
    assert "model echo:x" in terminal.stdout


def test_a_source_is_picked_by_its_name():
    assert type(sources.open_source("random")).__name__ == "OwnModel"
    assert type(sources.open_source(None)).__name__ == "OwnModel"
    assert type(sources.open_source("maps.npz")).__name__ == "SavedMaps"
    assert type(sources.open_source("maps.JSON")).__name__ == "SavedMaps"


def test_the_api_traces_plots_and_saves(tmp_path):
    with pytest.warns(attnviz.AttnvizWarning, match="random words"):
        maps = attnviz.trace(SOURCE, model="random", cache=False)
    assert maps.kinds == ("encoder_self", "decoder_self", "cross")
    assert maps.provenance.source_text == SOURCE
    figure = attnviz.plot(maps, kind="cross", head=1)
    assert len([ax for ax in figure.axes if ax.get_title()]) == 1
    assert "Cross-attention · layer 1 · head 1" in figure.axes[0].get_title()
    assert len([ax for ax in attnviz.plot(maps).axes if ax.get_title()]) == 3
    maps.save(tmp_path / "m.npz")
    back = attnviz.AttentionMaps.load(tmp_path / "m.npz")
    assert np.array_equal(back.cross, maps.cross) and back.provenance == maps.provenance
    encoder = attnviz.trace(SOURCE, model="random", part="encoder", cache=False)
    assert encoder.kinds == ("encoder_self",)


def test_the_api_raises_the_library_words_and_warns(recwarn):
    with pytest.raises(attnviz.AttnvizError, match="^layer 9 is out of range"):
        attnviz.plot(attnviz.trace(SOURCE, cache=False), layer=9)
    with pytest.raises(attnviz.AttnvizError, match="^target is empty"):
        attnviz.trace(SOURCE, target=" ", cache=False)
    with pytest.warns(attnviz.AttnvizWarning, match="'zebra'"):
        attnviz.trace("the zebra", cache=False)
    with pytest.raises(attnviz.AttnvizError, match="^kind 'both' is not a kind"):
        attnviz.plot(attnviz.trace(SOURCE, cache=False), kind="both")


def test_maps_from_hugging_face_outputs_follow_its_layout():
    rng = np.random.default_rng(0)
    layers = tuple(rng.random((2, 3, 4, 4)).astype(np.float32) for _ in range(2))  # (B, H, Q, K)
    cross = tuple(rng.random((2, 3, 5, 4)).astype(np.float32) for _ in range(2))
    decoder = tuple(rng.random((2, 3, 5, 5)).astype(np.float32) for _ in range(2))
    outputs = types.SimpleNamespace(encoder_attentions=layers, decoder_attentions=decoder,
                                    cross_attentions=cross)
    maps = AttentionMaps.from_huggingface(outputs, source_tokens=list("abcd"),
                                          target_tokens=list("vwxyz"), batch_index=1)
    assert maps.encoder_self.shape == (2, 3, 4, 4) and maps.cross.shape == (2, 3, 5, 4)
    assert np.array_equal(maps.cross[1], cross[1][1])
    encoder_only = AttentionMaps.from_huggingface({"attentions": layers},
                                                  source_tokens=list("abcd"))
    assert encoder_only.kinds == ("encoder_self",)
    decoder_only = AttentionMaps.from_huggingface({"attentions": decoder},
                                                  target_tokens=list("vwxyz"))
    assert decoder_only.kinds == ("decoder_self",)
    with pytest.raises(AttnvizError, match="must have shape"):
        AttentionMaps.from_huggingface({"attentions": layers}, source_tokens=list("abc"))


def test_importing_attnviz_imports_neither_torch_nor_matplotlib(tmp_path):
    code = ("import sys, attnviz; attnviz.AttentionMaps; attnviz.Provenance; "
            "attnviz.__version__; attnviz.trace; "
            f"attnviz.AttentionMaps.load({str(tmp_path / 'm.npz')!r}); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'transformers') if m in sys.modules))")
    attnviz.trace(SOURCE, model="random", part="encoder", cache=False).save(tmp_path / "m.npz")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]
    assert blocks, "the README's Python API section has no example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert list(tmp_path.iterdir())  # the example saves something


def _imports() -> dict[str, set[str]]:
    """Every attnviz module and the attnviz modules it imports, lazily or not."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() \
                        or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    found.add(candidate if is_module else node.module)
        graph[name] = {m for m in found if m == "attnviz" or m.startswith("attnviz.")} - {name}
    return graph


def _room(module: str) -> str:
    """The folder (or top-level module) that holds ``module``: ``attnviz.maps.views`` ->
    ``maps``; ``attnviz`` itself -> ``__init__``."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _layer(module: str) -> int:
    for index, rooms in enumerate(LAYERS):
        if _room(module) in rooms:
            return index
    raise AssertionError(f"{module} is in no layer of attnviz.layers.LAYERS: add it")


def test_every_folder_and_module_has_a_layer():
    rooms = {path.name.removesuffix(".py") for path in PACKAGE.iterdir()
             if (path.suffix == ".py" or (path / "__init__.py").exists())}
    assert rooms == {room for layer in LAYERS for room in layer}


def test_no_import_runs_back_up_a_layer_or_across_one():
    wrong = [(module, imported) for module, imports in _imports().items()
             for imported in imports
             if _layer(imported) > _layer(module)
             or (_layer(imported) == _layer(module) and _room(imported) != _room(module))]
    assert wrong == []


def test_there_is_no_import_cycle():
    graph = _imports()
    # A package imports its own modules: the folder's face, not a cycle of modules.
    for module in graph:
        graph[module] = {m for m in graph[module] if not module.startswith(m + ".")}
    seen, stack, cycles = set(), [], []

    def visit(module: str) -> None:
        if module in stack:
            cycles.append(stack[stack.index(module):] + [module])
            return
        if module in seen:
            return
        seen.add(module)
        stack.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        stack.pop()

    for module in sorted(graph):
        visit(module)
    assert cycles == []


def test_the_library_speaks_of_settings_in_its_own_words():
    """Only the CLI knows flag names: a library message names a setting as ⟨name⟩ (or with
    ``setting=``), and the CLI words it as a flag."""
    flagged = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                    "AttnvizError", "ValueError"):
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and \
                            re.search(r"(^|[\s(])(--?[a-z]|attnviz (encode|decode|show)\b)",
                                      part.value):
                        flagged.append(f"{path.name}:{node.lineno}: {part.value}")
    assert flagged == []


def test_a_setting_is_called_by_its_flag_on_the_command_line_and_its_name_in_python(tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("a b\tb a\n")
    result = runner.invoke(app, ["train", "--data", str(pairs), "--steps", "2", "--epochs", "1",
                                 "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: give --steps or --epochs, not both"
    from attnviz.train import loop

    with pytest.raises(attnviz.AttnvizError, match="^give steps or epochs, not both$"):
        loop.plan(task=None, data=pairs, steps=2, epochs=1)


def test_the_import_ban_names_the_files_that_help_imports():
    """pyproject.toml keeps torch and matplotlib out of the module level of the files that
    `attnviz --help` imports, and names them: the list and what --help imports agree."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    lint = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    (pattern,) = [glob for glob, rules in lint["per-file-ignores"].items()
                  if glob.startswith("!") and "TID253" in rules]
    named = pattern.removeprefix("!attnviz/{").removesuffix("}.py").split(",")
    code = ("import sys; sys.argv = ['attnviz', '--help']; import attnviz.cli.app; "
            "print(' '.join(m.__file__ for n, m in sys.modules.items() "
            "if n.startswith('attnviz')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    imported = {Path(path).relative_to(PACKAGE).with_suffix("").as_posix()
                for path in done.stdout.split()}
    covered = {name for name in imported if name in named
               or any(glob.endswith("/*") and name.startswith(glob[:-1]) for glob in named)}
    assert covered == imported, "--help imports files the ban does not name"
    assert {name for name in named if not name.endswith("/*")} <= imported, \
        "the ban names files that --help does not import"


def test_every_reference_to_attnviz_in_a_docstring_resolves():
    """``:func:`attnviz.x.y``` and the like name something that is there: a module moved into
    a folder, or a function gone, leaves no reference to it behind."""
    import importlib

    wrong = []
    for path in PACKAGE.rglob("*.py"):
        for name in re.findall(r":(?:func|mod|class|meth|data):`(attnviz(?:\.\w+)+)`",
                               path.read_text(encoding="utf-8")):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable prefix
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                try:
                    for part in parts[cut:]:
                        found = getattr(found, part)
                except AttributeError:
                    wrong.append(f"{path.relative_to(PACKAGE)}: {name}")
                break
            else:
                wrong.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert wrong == []


def test_the_api_warns_at_the_callers_line_whether_computed_or_read_back(tmp_path):
    """Under Python's own filter (a warning once per place), each call from another line of
    the caller's code is told, cache hit or not; a call that fails only raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        attnviz.trace("the zebra sees", cache=True)  # computed, and kept
        attnviz.trace("the zebra sees", cache=True)  # read back
        attnviz.explain("the zebra sees", kind="encoder")
        with pytest.raises(attnviz.AttnvizError, match="layer 9 is out of range"):
            attnviz.explain("the zebra sees", kind="encoder", layer=9)
    said = [w for w in caught if issubclass(w.category, AttnvizWarning)]
    assert len(said) == 3 and all("'zebra'" in str(w.message) for w in said)
    assert {w.filename for w in said} == {__file__}
    assert len({w.lineno for w in said}) == 3
