"""attnviz heads: the figures and labels of every head, for maps built by hand with known
heads, for attnviz's own models and for a corpus; the induction score on a planted head and
on a random model; norm-based weights against a direct computation; the atlas's files."""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnviz
from attnviz import sources
from attnviz.batch import heads as corpus
from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.flow import pipeline
from attnviz.maps import heads as figures
from attnviz.maps.atlas import LABELS, atlas_of, combine
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.model.norms import norm_based_weights, row_shares
from attnviz.render.colors import LABEL_COLORS
from attnviz.sources import Request
from attnviz.sources.base import Repeated
from attnviz.train.tasks import get_task, held_out_examples
from tests.conftest import SOURCE, TARGET

runner = CliRunner()
EXACT = 1e-6
PAIRS = 4  # lines of the corpus tests


@pytest.fixture(autouse=True)
def fresh_sources():
    """Each test opens its models anew (a corpus keeps one opened source per process)."""
    corpus._opened.cache_clear()
    yield
    corpus._opened.cache_clear()


def run(*args: str):
    return runner.invoke(app, ["heads", *args])


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith("heads ")]  # a corpus's progress bar
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- Maps built by hand, with known heads ------------------------------------------------------

N = 6  # tokens


def previous_head(causal: bool) -> np.ndarray:
    """Every query on the key before it (the first query, which has none, on itself)."""
    head = np.zeros((N, N))
    head[0, 0] = 1.0
    for q in range(1, N):
        head[q, q - 1] = 1.0
    return head


def known_heads(causal: bool) -> np.ndarray:
    """A previous-token head, a sink head, a uniform head and a diagonal head.

    Shape: ``[1, 4, N, N]``, rows sum to 1; masked above the diagonal when ``causal``.
    """
    sink = np.zeros((N, N))
    sink[:, 0] = 1.0
    visible = np.tril(np.ones((N, N))) if causal else np.ones((N, N))
    uniform = visible / visible.sum(axis=-1, keepdims=True)
    return np.stack([previous_head(causal), sink, uniform, np.eye(N)])[None].astype(np.float32)


def by_definition(head: np.ndarray, causal: bool) -> dict[str, float]:
    """The figures of one head, as the issue defines them, one query at a time."""
    sums = {name: [] for name in ("entropy", "first", "previous", "self", "distance")}
    for q in range(N):
        seen = q + 1 if causal else N  # the keys the query can see
        if seen < 2:
            continue
        row = head[q, :seen]
        sums["entropy"].append(-sum(w * math.log(w) for w in row if w > 0) / math.log(seen))
        sums["first"].append(row[0])
        sums["self"].append(row[q])
        sums["distance"].append(sum(w * abs(q - k) for k, w in enumerate(row)) / seen)
        if q >= 1:
            sums["previous"].append(row[q - 1])
    return {name: sum(values) / len(values) for name, values in sums.items()}


@pytest.fixture
def hand_built(tmp_path) -> Path:
    tokens = [f"t{i}" for i in range(N)]
    maps = AttentionMaps(tokens, ["<bos>", *tokens[1:]], encoder_self=known_heads(False),
                         decoder_self=known_heads(True),
                         cross=np.repeat(np.eye(N, dtype=np.float32)[None, None], 4, axis=1),
                         provenance=Provenance(model="hand"))
    maps.save(tmp_path / "hand.npz")
    return tmp_path / "hand.npz"


def test_hand_built_heads_have_the_figures_of_their_definition_and_their_labels(
        hand_built, tmp_path):
    result = run("--maps", str(hand_built), "-o", str(tmp_path / "heads.json"))
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "heads.json").read_text())
    records = {(r["kind"], r["layer"], r["head"]): r for r in data["heads"]}
    assert len(records) == 12
    for kind, causal in (("encoder_self", False), ("decoder_self", True)):
        for head, label in enumerate(["previous-token", "sink", "broad", "self"]):
            record = records[(kind, 0, head)]
            expected = by_definition(known_heads(causal)[0, head].astype(np.float64), causal)
            for name, value in expected.items():
                assert record[name] == pytest.approx(value, abs=EXACT), (kind, head, name)
            assert record["label"] == label, (kind, head)
            assert "induction" not in record  # not measured
    # Known values, so that the definitions above are not just the code's twin:
    assert records[("encoder_self", 0, 2)]["entropy"] == pytest.approx(1.0, abs=EXACT)
    assert records[("encoder_self", 0, 0)]["previous"] == pytest.approx(1.0, abs=EXACT)
    assert records[("encoder_self", 0, 0)]["first"] == pytest.approx(2 / N, abs=EXACT)
    assert records[("decoder_self", 0, 1)]["first"] == pytest.approx(1.0, abs=EXACT)
    assert records[("decoder_self", 0, 3)]["self"] == pytest.approx(1.0, abs=EXACT)
    # Cross-attention: the figures that apply, the others null.
    cross = records[("cross", 0, 0)]
    assert cross["entropy"] == pytest.approx(0.0, abs=EXACT)
    assert cross["first"] == pytest.approx(1 / N, abs=EXACT)
    assert cross["previous"] is cross["self"] is cross["distance"] is None
    assert cross["label"] is None
    assert data["labels"] == {name: f"{figure} >= {threshold}"
                              for name, figure, threshold in LABELS}
    assert data["provenance"]["model"] == "hand" and data["weights"] == "attention"


def test_a_query_that_sees_one_key_or_none_is_not_counted():
    stack = known_heads(True)
    stack[0, :, 2] = 0.0  # a query that saw no key (padding): left out, as is query 0
    found = figures.measure_kind("decoder_self", stack)
    counted = [1, 3, 4, 5]
    assert found["first"][0, 2] == pytest.approx(np.mean([1 / (q + 1) for q in counted]),
                                                 abs=EXACT)
    assert found["self"][0, 3] == pytest.approx(1.0, abs=EXACT)
    one = figures.measure_kind("encoder_self", np.ones((1, 1, 1, 1), np.float32))
    assert all(np.isnan(values).all() for values in one.values())  # one token: no figure


def test_the_terminal_lists_the_top_heads_of_each_label_with_its_threshold(hand_built):
    result = runner.invoke(app, ["heads", "--maps", str(hand_built)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "previous-token: previous >= 0.5: encoder_self L0 H0 1.00, decoder_self L0 H0 1.00" \
        in lines
    assert "sink: first >= 0.5: encoder_self L0 H1 1.00, decoder_self L0 H1 1.00" in lines
    assert not any(line.startswith("induction:") for line in lines)  # not measured
    assert any(line.startswith("label") and "entropy 0-1.00" in line for line in lines)
    assert "Masked decoder self-attention" in lines
    # Without colour, the label grid writes the labels' letters: P, F (the sink), B, S.
    grid = lines[lines.index("Masked decoder self-attention") + 3]
    assert grid.split()[:5] == ["L0", "P", "F", "B", "S"]


def test_the_picture_holds_a_grid_per_figure_and_the_labels_colours(hand_built, tmp_path):
    result = run("--maps", str(hand_built), "-o", str(tmp_path / "heads.png"),
                 "-o", str(tmp_path / "heads.svg"))
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "heads.png") as picture:
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    colors = {tuple(color) for color in pixels[::7]}
    for label in ("previous-token", "sink", "broad", "self"):
        color = LABEL_COLORS[label]
        assert tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)) in colors, label
    svg = (tmp_path / "heads.svg").read_text()
    for title in ("entropy", "previous", "distance", "previous-token: previous &gt;= 0.5"):
        assert title in svg


# --- The induction score -------------------------------------------------------------------------

LENGTH = 7


class PlantedSource:
    """A model with two heads: head 0 an induction head (on a repeated sequence, each query
    of the second copy attends to key q - n + 1), head 1 uniform."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[Request] = []

    def fingerprint(self, request: Request) -> str | None:
        return None

    def maps(self, request: Request) -> AttentionMaps:
        self.requests.append(request)
        if request.repeated is None:
            tokens = request.text.split()
        else:
            tokens = ["<s>", *map(str, request.repeated.ids(range(100, 200)))]
        size = len(tokens)
        induction = np.tril(np.ones((size, size))) / np.arange(1, size + 1)[:, None]
        if request.repeated is not None:
            n = request.repeated.length
            for q in range(1 + n, 1 + 2 * n):  # the second copy, after <s>
                induction[q] = 0.0
                induction[q, q - n + 1] = 1.0
        uniform = np.tril(np.ones((size, size))) / np.arange(1, size + 1)[:, None]
        stack = np.stack([induction, uniform])[None].astype(np.float32)  # (1, 2, T, T)
        options = {} if request.repeated is None else {
            "repeated": request.repeated.provenance({"decoder_self": 1})}
        return AttentionMaps([], tokens, decoder_self=stack,
                             provenance=Provenance(model=self.name, options=options))


@pytest.fixture
def planted(monkeypatch):
    opened: list[PlantedSource] = []
    module = types.ModuleType("attnviz.sources.planted")

    def open_planted(name: str) -> PlantedSource:
        opened.append(PlantedSource(name))
        return opened[-1]

    module.open = open_planted
    monkeypatch.setitem(sys.modules, "attnviz.sources.planted", module)
    monkeypatch.setattr(sources, "SOURCES", [(lambda n: n.startswith("planted:"), "planted"),
                                             *sources.SOURCES])
    return opened


def test_a_planted_induction_head_scores_1_through_the_pipeline(planted, tmp_path):
    result = run("one two three four", "-m", "planted:x", "--induction",
                 "--induction-length", str(LENGTH), "--seed", "3", "-o",
                 str(tmp_path / "h.json"))
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "h.json").read_text())
    first, second = data["heads"]
    assert first["induction"] == pytest.approx(1.0, abs=EXACT) and first["label"] == "induction"
    # The uniform head: the mean over the second copy of 1 / (q + 1).
    uniform = np.mean([1 / (q + 1) for q in range(1 + LENGTH, 1 + 2 * LENGTH)])
    assert second["induction"] == pytest.approx(uniform, abs=EXACT)
    assert data["induction"] == {"length": LENGTH, "seed": 3}
    # Two requests through the one source: the text, then the repeated sequence.
    requests = planted[0].requests
    assert [r.repeated for r in requests] == [None, Repeated(LENGTH, 3)]
    assert requests[1].text == "one two three four"


def test_a_repeated_sequence_is_its_tokens_twice_drawn_once_each_where_it_can():
    drawn = Repeated(5, seed=1).ids(range(10, 30))
    assert drawn[:5] == drawn[5:] and len(set(drawn[:5])) == 5
    assert set(drawn) <= set(range(10, 30))
    assert drawn == Repeated(5, seed=1).ids(range(10, 30))
    assert drawn != Repeated(5, seed=2).ids(range(10, 30))
    small = Repeated(8).ids([4, 5, 6])  # fewer tokens than the length: drawn again
    assert small[:8] == small[8:] and set(small) <= {4, 5, 6}
    with pytest.raises(AttnvizError, match="induction_length 1 is not a length"):
        Repeated(1)


@pytest.mark.parametrize("model", ["random", "translate"])
def test_attnviz_models_read_a_repeated_sequence_and_score_low_without_induction_heads(model):
    request = Request(SOURCE, None if model == "translate" else TARGET, repeated=Repeated(20))
    maps = pipeline.trace(model, request, cache=False)
    assert maps.source_tokens[:20] == maps.source_tokens[20:40] and \
        maps.source_tokens[40] == "<eos>"
    assert maps.target_tokens[0] == "<bos>" and maps.target_tokens[1:21] == \
        maps.target_tokens[21:41]
    assert maps.provenance.options["repeated"] == {
        "length": 20, "seed": 0, "starts": {"encoder_self": 0, "decoder_self": 1}}
    atlas = attnviz.heads(SOURCE, None if model == "translate" else TARGET, model,
                          induction=20, cache=False)
    for kind in ("encoder_self", "decoder_self"):
        score = atlas.figures[kind]["induction"]
        assert np.isfinite(score).all() and score.max() < 0.15, (kind, score)
    assert np.isnan(atlas.figures["cross"]["induction"]).all()


def test_the_induction_score_is_the_mean_weight_on_the_token_after_the_first_occurrence():
    n, start = 4, 2
    size = start + 2 * n + 1
    stack = np.full((1, 1, size, size), 1.0 / size, dtype=np.float32)
    for q in range(start + n, start + 2 * n):
        stack[0, 0, q] = 0.0
        stack[0, 0, q, q - n + 1] = 0.75
        stack[0, 0, q, 0] = 0.25
    assert figures.induction(stack, start, n)[0, 0] == pytest.approx(0.75, abs=EXACT)
    assert np.isnan(figures.induction(stack, start, n + 5)).all()  # the maps are too short


# --- attnviz's own models ------------------------------------------------------------------------

def test_the_translate_model_gives_a_record_for_every_head_of_every_kind(tmp_path):
    result = run(SOURCE, "--induction", "-o", str(tmp_path / "h.json"),
                 "-o", str(tmp_path / "h.png"))
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "h.json").read_text())
    kinds = [record["kind"] for record in data["heads"]]
    assert kinds == ["encoder_self"] * 8 + ["decoder_self"] * 8 + ["cross"] * 8
    for record in data["heads"]:
        for name in ("entropy", "first"):
            assert 0.0 <= record[name] <= 1.0
        if record["kind"] != "cross":
            assert 0.0 <= record["induction"] <= 1.0 and 0.0 <= record["distance"] < 1.0
    assert data["provenance"]["source_text"] == SOURCE
    assert data["provenance"]["target_generated"] is True
    maps = attnviz.trace(SOURCE)
    expected = figures.measure(maps)["decoder_self"]["previous"]
    previous = [record["previous"] for record in data["heads"]
                if record["kind"] == "decoder_self"]
    assert np.allclose(previous, expected.ravel(), atol=EXACT)


def test_the_atlas_of_one_text_is_that_of_its_maps_through_the_api(tmp_path):
    maps = attnviz.trace(SOURCE, cache=False)
    atlas = attnviz.heads(SOURCE, cache=False)
    again = attnviz.heads(maps)
    assert atlas.records() == again.records()
    with pytest.raises(AttnvizError, match="induction needs a model run"):
        attnviz.heads(maps, induction=10)


# --- A corpus --------------------------------------------------------------------------------

def write_pairs(path: Path, count: int = PAIRS) -> list:
    pairs = held_out_examples(get_task("translate"), count)
    path.write_text("".join(f"{p.source}\n" if i == 1 else f"{p.source}\t{p.target}\n"
                            for i, p in enumerate(pairs)), encoding="utf-8")
    return pairs


def test_a_corpus_gives_the_mean_and_spread_of_its_lines_figures(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.tsv")
    result = run("--pairs", str(tmp_path / "pairs.tsv"), "-o", str(tmp_path / "c.json"))
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    per_line = [attnviz.heads(p.source, None if i == 1 else p.target, cache=False)
                for i, p in enumerate(pairs)]
    for record in data["heads"]:
        where = (record["kind"], record["layer"], record["head"])
        for name in ("entropy", "first", "previous", "self", "distance"):
            values = [line.figures[where[0]][name][where[1:]] for line in per_line]
            if np.isnan(values).all():
                assert record[name] is None and record["spread"][name] is None
                continue
            assert record[name] == pytest.approx(np.mean(values), abs=EXACT)
            assert record["spread"][name] == pytest.approx(np.std(values), abs=EXACT)
    assert data["corpus"] == {"pairs": str(tmp_path / "pairs.tsv"), "lines": PAIRS}
    assert data["provenance"]["source_text"] is None and data["provenance"]["model"] == \
        "translate"


def test_a_line_of_a_corpus_that_fails_is_named_and_the_others_are_measured(tmp_path):
    (tmp_path / "p.tsv").write_text("the black cat sees the red car\n"
                                    + " ".join(["the"] * 2000) + "\n")
    result = run("--pairs", str(tmp_path / "p.tsv"), "-m", "dates", "-o",
                 str(tmp_path / "c.json"))
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'p.tsv'}:2: " in result.stderr
    assert "1 of 2 lines could not be measured" in result.stderr
    assert json.loads((tmp_path / "c.json").read_text())["corpus"]["lines"] == 1


def test_lines_combine_in_their_order_whatever_order_they_finished_in(tmp_path):
    write_pairs(tmp_path / "pairs.tsv")
    settings = corpus.Settings(use_cache=False)
    from attnviz.io.pairs import read_pairs

    lines = read_pairs(tmp_path / "pairs.tsv")
    measured = [corpus.measure_line(settings, line) for line in lines]
    forwards = combine([m.figures for m in measured], measured[0].provenance)
    backwards = combine([m.figures for m in measured[::-1]], measured[0].provenance)
    for kind in forwards.kinds:  # the same numbers to float rounding, in any order
        for name in ("entropy", "first"):
            assert np.allclose(forwards.figures[kind][name], backwards.figures[kind][name],
                               atol=1e-12)
    ordered = corpus.run(settings, lines[::-1])  # run() sorts by line before combining
    assert ordered.atlas.to_bytes() == corpus.run(settings, lines).atlas.to_bytes()


def corpus_json(tmp_path: Path, name: str, *args: str) -> bytes:
    result = run("--pairs", str(tmp_path / "pairs.tsv"), "--induction", "--no-cache",
                 "-o", str(tmp_path / name), *args)
    assert result.exit_code == 0, result.stderr
    return (tmp_path / name).read_bytes()


@pytest.mark.process
def test_two_jobs_give_the_same_json_as_one(tmp_path):
    write_pairs(tmp_path / "pairs.tsv", 6)
    assert corpus_json(tmp_path, "j1.json", "--jobs", "1") == \
        corpus_json(tmp_path, "j2.json", "--jobs", "2")


DASK = "needs the dask extra: pip install -e '.[dask]'"


def dask_cluster(processes: bool):
    if os.environ.get("ATTNVIZ_REQUIRE_DASK") != "1":
        pytest.importorskip("distributed", reason=DASK)
    from distributed import LocalCluster

    return LocalCluster(n_workers=1 if not processes else 2, threads_per_worker=1,
                        processes=processes, dashboard_address=None)


@pytest.mark.process
@pytest.mark.parametrize("processes", [False, True])
def test_a_dask_cluster_gives_the_same_json_as_one_job_and_two(tmp_path, processes):
    """A LocalCluster started here: worker threads of this process, or two worker
    processes (each importing torch, as a worker of a real cluster does)."""
    write_pairs(tmp_path / "pairs.tsv", 6)
    one = corpus_json(tmp_path, "j1.json", "--jobs", "1")
    with dask_cluster(processes) as cluster:
        on_cluster = corpus_json(tmp_path, "d.json", "--scheduler", cluster.scheduler_address)
    assert on_cluster == one
    if processes:
        assert one == corpus_json(tmp_path, "j2.json", "--jobs", "2")


def test_a_scheduler_that_cannot_be_reached_is_one_line(tmp_path):
    pytest.importorskip("distributed", reason=DASK)
    write_pairs(tmp_path / "pairs.tsv", 2)
    one_line_error(run("--pairs", str(tmp_path / "pairs.tsv"), "--scheduler", "foo://bar"),
                   "cannot reach the Dask scheduler at foo://bar", "--scheduler")


# --- Norm-based weights --------------------------------------------------------------------------

def test_norm_based_weights_of_an_own_model_are_a_direct_computation(model_file):
    maps = pipeline.trace(str(model_file), Request(SOURCE, TARGET, weights="norm"), cache=False)
    plain = pipeline.trace(str(model_file), Request(SOURCE, TARGET), cache=False)
    assert maps.measure == "norm" and maps.provenance.options["weights"] == "norm"
    from attnviz.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(model_file)
    model = checkpoint.model
    ids = torch.tensor([checkpoint.source_ids(checkpoint.source_tokenizer.split(SOURCE))])
    block = model.encoder_blocks[0].self_attention
    with torch.no_grad():  # layer 0's values, from its own input: the embedded source
        h = model.encoder_blocks[0].self_attention_norm(model._embed(model.source_embedding,
                                                                     ids))
        values = block.value_proj(h)[0].numpy()  # (S, D)
    out = block.out_proj.weight.detach().numpy()  # (D, D)
    heads, width = model.config.n_heads, model.config.d_model // model.config.n_heads
    for head in range(heads):
        part = slice(head * width, (head + 1) * width)
        sizes = np.linalg.norm(values[:, part] @ out[:, part].T, axis=-1)  # (S,) ‖f(x_j)‖
        raw = plain.encoder_self[0, head] * sizes[None, :]  # ‖α f(x)‖
        expected = raw / raw.sum(axis=-1, keepdims=True)
        assert np.allclose(maps.encoder_self[0, head], expected, atol=EXACT)
    assert np.allclose(maps.cross.sum(axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(maps.cross, plain.cross, atol=1e-3)


def test_norm_based_weights_take_grouped_value_heads_as_a_hugging_face_model_gives_them():
    """The seam a Hugging Face model's attention calls plug into: four query heads sharing
    two key/value heads, an output projection reading the four heads side by side."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(1, 4, 3, 5, generator=generator), dim=-1)
    values = torch.randn(1, 2, 5, 6, generator=generator)  # (B, H_kv, S, d)
    out = torch.randn(10, 24, generator=generator)  # (D_out, H d)
    found = norm_based_weights(weights, values, out)
    for head in range(4):
        f = values[0, head // 2] @ out[:, head * 6:(head + 1) * 6].T  # (S, D_out)
        expected = weights[0, head] * f.norm(dim=-1)[None, :]
        assert torch.allclose(found[0, head], expected, atol=1e-6)
    shares = row_shares(found)
    assert torch.allclose(shares.sum(dim=-1), torch.ones(1, 4, 3), atol=1e-6)
    assert torch.equal(row_shares(torch.zeros(2, 3)), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reads 23 features, not 4 heads of 6"):
        norm_based_weights(weights, values, out[:, :23])


def test_norm_based_weights_are_drawn_and_measured_with_their_title(tmp_path):
    result = runner.invoke(app, ["decode", SOURCE, "--weights", "norm", "--kind", "cross",
                                 "--head", "0"])
    assert result.exit_code == 0, result.stderr
    assert "Cross-attention (norm-based: share of ‖α f(x)‖) · layer 1 · head 0" in \
        result.stdout
    done = run(SOURCE, "--weights", "norm", "-o", str(tmp_path / "h.json"))
    assert done.exit_code == 0, done.stderr
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["weights"] == "norm"
    atlas = atlas_of(attnviz.trace(SOURCE, weights="norm"))
    assert [r["entropy"] for r in data["heads"]] == [r["entropy"] for r in atlas.records()]
    runner.invoke(app, ["decode", SOURCE, "--weights", "norm", "-o", str(tmp_path / "n.npz")])
    shown = runner.invoke(app, ["show", str(tmp_path / "n.npz"), "--kind", "encoder"])
    assert "Encoder self-attention (norm-based" in shown.stdout
    one_line_error(run("--maps", str(tmp_path / "n.npz"), "--weights", "attention",
                       "--induction"), "--maps holds maps computed before")


def test_the_cache_keeps_norm_based_maps_apart_from_attention_maps():
    plain = attnviz.trace(SOURCE)
    norm = attnviz.trace(SOURCE, weights="norm")
    assert norm.measure == "norm" and plain.measure == "attention"
    assert not np.allclose(norm.cross, plain.cross, atol=1e-3)
    assert np.array_equal(attnviz.trace(SOURCE, weights="norm").cross, norm.cross)  # a hit
    source = sources.open_source("translate")
    assert source.fingerprint(Request(SOURCE)) != source.fingerprint(Request(SOURCE,
                                                                             weights="norm"))


def test_saved_maps_keep_the_weights_they_were_saved_with(hand_built):
    one_line_error(run("--maps", str(hand_built), "--weights", "norm"),
                   "holds the attention weights it was saved with, not norm ones",
                   "--weights")


# --- Mistakes: one line each ---------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    ([], "give one of TEXT, --maps FILE and --pairs FILE"),
    ([SOURCE, "--pairs", "p.tsv"], "not TEXT and --pairs"),
    ([SOURCE, "--jobs", "2"], "--jobs and --scheduler measure the lines of a corpus"),
    ([SOURCE, "-o", "heads.gif"], "use one of .json, .png, .svg, .pdf, .html"),
    (["--maps", "m.npz", "--target", "x"], "--target goes with TEXT"),
])
def test_a_mistake_is_one_line(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(run(*args), fragment)


def test_a_corpus_has_no_page_and_a_maps_file_no_induction(tmp_path, hand_built):
    write_pairs(tmp_path / "pairs.tsv", 2)
    one_line_error(run("--pairs", str(tmp_path / "pairs.tsv"), "-o", str(tmp_path / "c.html")),
                   "the .html page holds the maps of one text")
    one_line_error(run(SOURCE, "-m", str(hand_built), "--induction"),
                   "holds the maps of one text, not of a repeated random sequence", "--model")
    with pytest.raises(AttnvizError, match="page holds the maps of one text"):
        pipeline.to_bytes(None, None, "html", "viridis", atlas=atlas_of(AttentionMaps.load(
            hand_built)))


# --- Hugging Face models (tiny random ones, built by tests/test_huggingface.py) --------------

from tests.test_huggingface import bert, gpt2, marian  # noqa: E402,F401 - the fixtures

HF = 'needs the hf extra: pip install -e ".[hf]"'


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    """A Llama with grouped-query attention: 4 query heads share 2 key/value heads."""
    pytest.importorskip("transformers", reason=HF)
    from tests.test_hf_attention import build

    return build(tmp_path_factory.mktemp("llama"), "llama")


def eager(folder: Path, auto: str):
    """The saved model, loaded by transformers alone with its own eager attention."""
    import warnings

    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, auto).from_pretrained(
            folder, attn_implementation="eager").eval()


def hf_ids(folder: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(folder)(text)["input_ids"])


@pytest.mark.parametrize("fixture, kinds, before", [
    ("bert", ("encoder_self",), 1), ("gpt2", ("decoder_self",), 0),
    ("marian", ("encoder_self", "decoder_self"), 0)])
def test_a_hugging_face_model_reads_the_repeated_sequence_inside_its_special_tokens(
        request, fixture, kinds, before, tmp_path):
    folder = request.getfixturevalue(fixture)
    text = "the black cat sees the red car"
    repeated = pipeline.trace(f"hf:{folder}", Request(text, repeated=Repeated(5)),
                              cache=False)
    starts = repeated.provenance.options["repeated"]["starts"]
    assert tuple(starts) == kinds and repeated.provenance.source_text is None
    tokens = repeated.source_tokens if kinds[0] == "encoder_self" else repeated.target_tokens
    start = starts[kinds[0]]
    assert start == before
    assert tokens[start:start + 5] == tokens[start + 5:start + 10]
    result = run(text, "-m", f"hf:{folder}", "--induction", "--induction-length", "5",
                 "-o", str(tmp_path / "h.json"))
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "h.json").read_text())
    for record in data["heads"]:
        if record["kind"] in kinds:
            assert 0.0 <= record["induction"] <= 1.0
        else:
            assert record["induction"] is None


def repeated_ids(folder: Path, length: int) -> tuple[list[int], list[int] | None]:
    """The ids a model reads of ``Repeated(length)``, built here from the tokenizer alone:
    the sequence twice (drawn from the tokens that are not special) inside the specials
    around a text; an encoder-decoder's decoder reads its start token, then the same."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = transformers.AutoConfig.from_pretrained(folder)
    vocabulary = min(len(tokenizer), config.vocab_size)
    twice = Repeated(length).ids([i for i in range(vocabulary)
                                  if i not in tokenizer.all_special_ids])
    if config.model_type == "bert":
        return [tokenizer.cls_token_id, *twice, tokenizer.sep_token_id], None
    if config.model_type == "gpt2":
        return twice, None
    return [*twice, tokenizer.eos_token_id], [config.decoder_start_token_id, *twice]


@pytest.mark.parametrize("fixture, auto", [
    ("bert", "BertForMaskedLM"), ("gpt2", "GPT2LMHeadModel"), ("marian", "MarianMTModel")])
def test_a_repeated_sequence_goes_through_attnvizs_function_and_equals_eager(
        request, fixture, auto, monkeypatch):
    """The maps of the repeated sequence are those transformers' own eager attention gives
    on the same ids, and every one came through attnviz's function (its calls counted)."""
    import attnviz.model.attention as attention
    from attnviz.sources.huggingface.passes import THROUGH_INTERFACE

    folder = request.getfixturevalue(fixture)
    calls = []
    real = attention.scaled_dot_product_attention
    monkeypatch.setattr(attention, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    maps = pipeline.trace(f"hf:{folder}", Request(SOURCE, TARGET if fixture == "marian"
                                                  else None, repeated=Repeated(5)), cache=False)
    assert maps.provenance.options["attention"] == THROUGH_INTERFACE
    assert maps.provenance.target_text is None and not maps.provenance.target_generated
    ids, decoder = repeated_ids(folder, 5)
    with torch.no_grad():
        out = eager(folder, auto)(input_ids=torch.tensor([ids]), output_attentions=True,
                                  **({} if decoder is None else
                                     {"decoder_input_ids": torch.tensor([decoder])}))
    if decoder is None:
        expected = {"encoder_self" if fixture == "bert" else "decoder_self": out.attentions}
    else:
        expected = {"encoder_self": out.encoder_attentions,
                    "decoder_self": out.decoder_attentions, "cross": out.cross_attentions}
    assert maps.kinds == tuple(expected)
    for kind, layers in expected.items():
        np.testing.assert_allclose(maps.stack(kind), np.stack([a[0].numpy() for a in layers]),
                                   rtol=0, atol=EXACT)
    assert len(calls) == sum(maps.stack(kind).shape[0] for kind in maps.kinds)


def test_a_repeated_sequence_keeps_what_is_asked_and_fits_the_memory_budget(request,
                                                                             monkeypatch):
    from attnviz.maps.keep import Keep
    from attnviz.sources.huggingface import passes

    name = f"hf:{request.getfixturevalue('bert')}"
    whole = pipeline.trace(name, Request(SOURCE, repeated=Repeated(5)), cache=False)
    kept = pipeline.trace(name, Request(SOURCE, repeated=Repeated(5), keep=Keep(
        layers=(1,), heads=(0,), precision="float16")), cache=False)
    assert kept.encoder_self.shape[:2] == (1, 1) and kept.encoder_self.dtype == np.float16
    assert kept.layers_of("encoder_self") == [1] and kept.heads_of("encoder_self") == [0]
    np.testing.assert_allclose(kept.encoder_self[0, 0], whole.encoder_self[1, 0], atol=1e-3)
    assert kept.provenance.options["repeated"] == whole.provenance.options["repeated"]
    # 2 layers x 2 heads of (2n + 2)² float32 weights kept, and as much again of work: 32
    # (2n + 2)² bytes, 8,192 for n = 7; 5,000 bytes hold n = 5 at most.
    memory = 5000 / 1024**3
    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("the model ran"))
    with pytest.raises(AttnvizError, match=r"read a shorter sequence \(induction_length 5 at "
                                           r"most\)") as refused:
        pipeline.trace(name, Request(SOURCE, repeated=Repeated(7), memory=memory), cache=False)
    assert "cut the text" not in str(refused.value)
    monkeypatch.undo()
    pipeline.trace(name, Request(SOURCE, repeated=Repeated(5), memory=memory), cache=False)


def test_a_repeated_sequence_longer_than_the_models_positions_is_refused(request):
    with pytest.raises(AttnvizError, match="induction_length 10 is too long for this model: "
                       "the sequence twice takes 22 positions, and its positions cover at most "
                       "16; give at most 7"):
        pipeline.trace(f"hf:{request.getfixturevalue('bert')}",
                       Request(SOURCE, repeated=Repeated(10)), cache=False)
    result = run(SOURCE, "-m", f"hf:{request.getfixturevalue('gpt2')}", "--induction",
                 "--induction-length", "17")
    one_line_error(result, "--induction-length 17 is too long", "give at most 16")


# --- Norm-based weights of Hugging Face models -------------------------------------------------

def own_parts(model, name: str) -> list[tuple]:
    """Per attention layer of a transformers model, read from its own modules: the module
    whose output holds the values, how to read them as ``[S, H_kv, d]`` from that output,
    and the output projection's weight ``[D_out, H d]``."""
    if name == "llama":
        return [(layer.self_attn.v_proj,
                 lambda out, d=layer.self_attn.head_dim: out[0].view(out.shape[1], -1, d),
                 layer.self_attn.o_proj.weight) for layer in model.model.layers]
    if name == "gpt2":
        config = model.config
        width = config.n_embd // config.n_head
        return [(block.attn.c_attn,  # (1, S, 3 D): queries, keys, values side by side
                 lambda out: out[0].split(config.n_embd, dim=-1)[2].view(out.shape[1], -1,
                                                                          width),
                 block.attn.c_proj.weight.T)  # Conv1D holds (in, out)
                for block in model.transformer.h]
    if name == "bert":
        width = model.config.hidden_size // model.config.num_attention_heads
        return [(layer.attention.self.value,
                 lambda out: out[0].view(out.shape[1], -1, width),
                 layer.attention.output.dense.weight) for layer in model.bert.encoder.layer]
    raise ValueError(name)


def direct_norm_based(model, name: str, ids: list[int]) -> np.ndarray:
    """The norm-based weights of every layer and head, straight from the definition: α from
    transformers' own eager attention, f(x_j) = v_j W_O^h from the model's own value vectors
    (as its value projection gives them) and output projection, each row as shares of its sum.

    Shape: ``[L, H, T, S]``.
    """
    parts = own_parts(model, name)
    values = []
    hooks = [module.register_forward_hook(lambda module, args, out: values.append(out))
             for module, _, _ in parts]
    try:
        with torch.no_grad():
            alphas = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
    finally:
        for hook in hooks:
            hook.remove()
    layers = []
    with torch.no_grad():
        for (_, read, out_weight), value, alpha in zip(parts, values, alphas, strict=True):
            v = read(value)  # (S, H_kv, d)
            heads, width = alpha.shape[1], v.shape[-1]
            rows = []
            for head in range(heads):
                shared = head // (heads // v.shape[1])  # the key/value head it reads
                f = v[:, shared] @ out_weight[:, head * width:(head + 1) * width].T  # (S, D)
                raw = alpha[0, head] * f.norm(dim=-1)[None, :]  # (T, S): ‖α_ij f(x_j)‖
                rows.append(raw / raw.sum(dim=-1, keepdim=True))
            layers.append(torch.stack(rows))
    return torch.stack(layers).numpy()  # (L, H, T, S)


@pytest.mark.parametrize("fixture, auto, kind", [
    ("llama", "LlamaForCausalLM", "decoder_self"), ("gpt2", "GPT2LMHeadModel", "decoder_self"),
    ("bert", "BertForMaskedLM", "encoder_self")])
def test_hugging_face_norm_based_weights_are_a_direct_computation(request, fixture, auto, kind):
    """Llama (4 query heads on 2 key/value heads, o_proj), GPT-2 (c_proj, a Conv1D) and BERT
    (its projection beside the attention, attention.output.dense)."""
    from attnviz.sources.huggingface.passes import THROUGH_INTERFACE

    folder = request.getfixturevalue(fixture)
    maps = attnviz.trace(SOURCE, model=f"hf:{folder}", weights="norm", cache=False)
    plain = attnviz.trace(SOURCE, model=f"hf:{folder}", cache=False)
    assert maps.measure == "norm" and maps.provenance.options["weights"] == "norm"
    assert maps.provenance.options["attention"] == THROUGH_INTERFACE
    expected = direct_norm_based(eager(folder, auto), fixture, hf_ids(folder, SOURCE))
    np.testing.assert_allclose(maps.stack(kind), expected, rtol=0, atol=EXACT)
    assert not np.allclose(maps.stack(kind), plain.stack(kind), atol=1e-3)
    if kind == "decoder_self":  # the future stays hidden
        assert (maps.stack(kind)[..., np.triu_indices(maps.stack(kind).shape[-1], 1)[0],
                                 np.triu_indices(maps.stack(kind).shape[-1], 1)[1]] == 0).all()
    kept = attnviz.trace(SOURCE, model=f"hf:{folder}", weights="norm", cache=False, layer=1,
                         head=1, precision="float16")
    np.testing.assert_allclose(kept.stack(kind)[0, 0], expected[1, 1], atol=1e-3)


def test_norm_based_weights_of_a_hugging_face_model_are_drawn_measured_and_cached_apart(
        request, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNVIZ_CACHE_DIR", str(tmp_path / "cache"))
    name = f"hf:{request.getfixturevalue('gpt2')}"
    result = runner.invoke(app, ["decode", SOURCE, "-m", name, "--weights", "norm", "--layer",
                                 "1", "--head", "0"])
    assert result.exit_code == 0, result.stderr
    assert "Masked decoder self-attention (norm-based: share of ‖α f(x)‖) · layer 1 · head 0" \
        in \
        result.stdout
    done = run(SOURCE, "-m", name, "--weights", "norm", "--induction", "--induction-length",
               "5", "-o", str(tmp_path / "h.json"))
    assert done.exit_code == 0, done.stderr
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["weights"] == "norm"
    norm = attnviz.trace(SOURCE, model=name, weights="norm")
    assert [r["entropy"] for r in data["heads"]] == [r["entropy"] for r in
                                                     atlas_of(norm).records()]
    assert all(0.0 <= r["induction"] <= 1.0 for r in data["heads"])
    plain = attnviz.trace(SOURCE, model=name)
    assert plain.measure == "attention" and not np.allclose(plain.decoder_self,
                                                            norm.decoder_self, atol=1e-3)
    source = sources.open_source(name)
    assert source.fingerprint(Request(SOURCE)) != source.fingerprint(Request(SOURCE,
                                                                             weights="norm"))


def test_norm_based_weights_are_refused_where_the_attention_does_not_come_through_attnviz(
        request, monkeypatch):
    """A model whose attention runs in its own code gives its weights (output_attentions)
    but never its values: norm-based weights are refused, in one line, with the way out."""
    name = f"hf:{request.getfixturevalue('gpt2')}"
    from transformers import AttentionInterface

    from attnviz.sources.huggingface import interface, source

    def refuse(*args, **kwargs):
        raise interface.Unsupported("softcap")

    monkeypatch.setitem(AttentionInterface._global_mapping, interface.IMPLEMENTATION, refuse)
    monkeypatch.setattr(source, "register", lambda: None)
    result = runner.invoke(app, ["decode", SOURCE, "-m", name, "--weights", "norm",
                                 "--no-cache"])
    line = one_line_error(result, "norm-based weights need each attention layer's values",
                          "(it passes softcap, which the formula lacks)",
                          "draw it with --weights attention")
    assert "Traceback" not in result.stderr and line.count("error") == 1
    assert attnviz.trace(SOURCE, model=name, cache=False).measure == "attention"


def test_an_attention_module_without_an_output_projection_is_refused_naming_the_model():
    from attnviz.sources.huggingface.interface import Call
    from attnviz.sources.huggingface.projections import Projections, output_weight

    class Attention(torch.nn.Module):  # queries, keys and values, and no projection after
        def __init__(self, features: int) -> None:
            super().__init__()
            self.value = torch.nn.Linear(8, features)
            self.dense = torch.nn.Linear(features + 1, 8)  # reads other features: not it

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention(8)
            self.output = torch.nn.Linear(16, 8)  # a feed-forward layer's, not the heads'

    block = Block()
    weights, values = torch.full((1, 2, 3, 3), 1 / 3), torch.ones(1, 2, 3, 4)
    call = Call(block.attention, values, values, values, None, None, 0.5, weights, values)
    with pytest.raises(AttnvizError, match=r"^hf:tiny: attnviz cannot find the output "
                       r"projection of its attention layers \(Attention has no o_proj, "
                       r"out_proj, o, c_proj, dense\.\.\. reading its 2 heads of 4\), .*; "
                       r"draw it with weights attention$"):
        Projections(block, "hf:tiny").of(call)
    block.output = torch.nn.Linear(8, 5)  # now beside it, as BERT keeps it
    assert output_weight(block.attention, block, 8) is block.output.weight
