"""attnviz export: a pairs file to files per line and an index; interrupted, rerun, in a pool."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attnviz
from attnviz import sources
from attnviz.batch import export
from attnviz.batch import pool as worker_pool
from attnviz.cli.app import app
from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.flow import pipeline
from attnviz.io import atomic as files
from attnviz.io.pairs import Line, read_pairs
from attnviz.maps.data import AttentionMaps
from attnviz.train.tasks import get_task, held_out_examples
from tests.test_page import page_data

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_sources():
    """Each test opens its models anew (the export keeps one opened source per process)."""
    export._opened.cache_clear()
    yield
    export._opened.cache_clear()


def write_pairs(path: Path, count: int, without_target: set[int] = frozenset()) -> list:
    """``count`` held-out pairs of the translate task; the lines in ``without_target`` (0-based)
    give the source alone."""
    pairs = held_out_examples(get_task("translate"), count)
    path.write_text("".join(f"{p.source}\n" if i in without_target else f"{p.source}\t{p.target}\n"
                            for i, p in enumerate(pairs)), encoding="utf-8")
    return pairs


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src")]


def links_of(index: Path) -> list[str]:
    parser = Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.links


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


# --- reading the pairs ---------------------------------------------------------------------

def test_lines_take_an_optional_target_and_keep_their_numbers(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("\ufeffthe cat\tle chat\r\n\n  \nthe dog\na car\t \n", encoding="utf-8")
    assert read_pairs(path) == [Line(1, "the cat", "le chat"),
                                       Line(4, "the dog", None),
                                       Line(5, "a car", None)]
    assert Line(7, "x", None).stem == "0007" and Line(12345, "x", None).stem \
        == "12345"


@pytest.mark.parametrize("content, message", [
    (b"a\tb\nc\td\te\nf\tg\th\n", r"^pairs.tsv:2: more than one tab; write one pair a line: "
     r"source<TAB>target, or the source alone to let the model write the target \(also bad: "
     r"line 3\)$"),
    (b"a\tb\n" + b"\tx\n" * 13, r"^pairs.tsv:2: the source is empty; .* \(also bad: lines "
                                  r"3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 2 more\)$"),
    (b"a\tb\n \tb\n", r"^pairs.tsv:2: the source is empty; write one pair a line"),
    (b"a\tb\nc\xff\n", r"^pairs.tsv:2: the file is not UTF-8 text; save it as UTF-8$"),
    (b"\n \n", r"^pairs file pairs.tsv holds no pairs; write one pair a line"),
])
def test_bad_lines_are_named_by_file_and_line(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    Path("pairs.tsv").write_bytes(content)
    with pytest.raises(AttnvizError, match=message):
        read_pairs(Path("pairs.tsv"))
    result = runner.invoke(app, ["export", "pairs.tsv", "-d", "out"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    said = result.stderr.removeprefix("error: ").rstrip("\n")
    hint = "; or leave the bad lines out with --skip-bad-lines"  # export's way out, too
    assert said.endswith(hint) is ("holds no pairs" not in said)
    assert re.match(message, said.removesuffix(hint))
    assert not Path("out").exists()  # nothing made before the file proved good


def test_a_fifo_a_folder_and_a_missing_file_are_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.tsv"
    os.mkfifo(fifo)
    with pytest.raises(AttnvizError, match="is not a regular file"):
        read_pairs(fifo)  # would wait for a writer forever if opened plainly
    with pytest.raises(AttnvizError, match="is a directory"):
        read_pairs(tmp_path)
    with pytest.raises(AttnvizError, match="^pairs file .*nope.tsv does not exist; write one pair "
                                           "a line: source<TAB>target, or the source alone to "
                                           "let the model write the target$"):
        read_pairs(tmp_path / "nope.tsv")


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "pairs.tsv").write_text("a\tb\n")
    (tmp_path / "out").write_text("")
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                 str(tmp_path / "out")])
    assert result.exit_code == 1 and "is a file; choose a folder" in result.stderr


# --- drawing ---------------------------------------------------------------------------------

def test_twenty_pairs_every_link_of_the_index_resolves(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.tsv", 20, without_target={0, 7})
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d", str(out),
                                 "-f", "html", "-f", "npz", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert "20/20" in result.stderr  # the progress bar, on stderr
    assert f"wrote {out / 'index.html'}: 20 pairs drawn, 0 done before" in result.stderr
    links = links_of(out / "index.html")
    assert len(links) == 60
    assert all((out / link).is_file() for link in links)
    assert sorted(links) == sorted(f"{n:04d}.{fmt}" for n in range(1, 21)
                                   for fmt in ("html", "npz", "json"))
    index = (out / "index.html").read_text(encoding="utf-8")
    for pair in pairs:
        assert pair.source in index
    assert index.count("(written by the model)") == 2
    # Each file holds that line's maps, every kind: as tracing the pair here gives them.
    maps = AttentionMaps.load(out / "0003.npz")
    expected = attnviz.trace(pairs[2].source, pairs[2].target, cache=False)
    for kind in ("encoder_self", "decoder_self", "cross"):
        assert np.array_equal(maps.stack(kind), expected.stack(kind))
    assert len(page_data((out / "0003.html").read_bytes())["kinds"]) == 3
    assert AttentionMaps.load(out / "0001.json").provenance.target_generated


def test_pictures_are_shown_in_the_index(tmp_path):
    write_pairs(tmp_path / "pairs.tsv", 2)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d", str(out),
                                 "-f", "png", "-f", "svg"])
    assert result.exit_code == 0, result.stderr
    index = (out / "index.html").read_text()
    assert '<img src="0001.png"' in index and '<img src="0002.svg"' in index
    assert (out / "0002.png").read_bytes().startswith(b"\x89PNG")
    assert b"Cross-attention" in (out / "0001.svg").read_bytes()


def entries_of(index: Path) -> dict[int, str]:
    """Each row of the index by line number: its HTML, from one ``<tr>`` to the next."""
    rows = index.read_text(encoding="utf-8").split("<tr>")[2:]  # after the heading row
    return {int(re.search(r'<td class="n">(\d+)</td>', row).group(1)): row for row in rows}


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.tsv", 4)
    out = tmp_path / "out"
    args = ["export", str(tmp_path / "pairs.tsv"), "-d", str(out), "-f", "html"]
    assert runner.invoke(app, args).exit_code == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.glob("0*.html")}
    result = runner.invoke(app, args)
    assert "0 pairs drawn, 4 done before" in result.stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("0*.html")} == before
    (out / "0002.html").unlink()  # a file gone: its line is drawn again
    result = runner.invoke(app, args + ["-f", "npz"])  # and a new format for every line
    assert "4 pairs drawn, 0 done before" in result.stderr
    assert sorted(p.name for p in out.glob("000*")) == [f"000{n}.{f}" for n in range(1, 5)
                                                        for f in ("html", "npz")]
    assert (out / "0001.html").stat().st_mtime_ns == before["0001.html"]  # kept, not redrawn
    # A pair's text changed (line 2), and one that now fails (line 3, far too long): the
    # index shows their new texts, line 2's new files and no file of line 3, whose old files,
    # which showed another pair, are gone (all or nothing, per line).
    lines = (tmp_path / "pairs.tsv").read_text(encoding="utf-8").splitlines()
    lines[1] = "the red car sees the cat\tla voiture rouge voit le chat"
    lines[2] = " ".join(["the cat"] * 3000) + "\tle chat"
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    old_npz = (out / "0002.npz").read_bytes()
    result = runner.invoke(app, args)  # html only: line 2's npz shows the old pair
    assert result.exit_code == 1
    assert "1 pairs drawn, 2 done before, 1 failed" in result.stderr
    assert sorted(p.name for p in out.glob("000*")) == [
        "0001.html", "0001.npz", "0002.html", "0004.html", "0004.npz"]
    assert sorted(p.name for p in (out / export.RECORDS).iterdir()) == [
        "0001.json", "0002.json", "0004.json", export.LOCK]
    assert (out / "0002.npz").exists() is False and old_npz
    assert links_of(out / "index.html") == ["0001.npz", "0001.html", "0002.html",
                                            "0004.npz", "0004.html"]
    rows = entries_of(out / "index.html")
    assert "the red car sees the cat" in rows[2] and "la voiture rouge voit le chat" in rows[2]
    assert pairs[1].source not in rows[2] and pairs[1].target not in rows[2]
    assert "the text is too long" in rows[3] and "<i>not done</i>" in rows[3]
    assert "the text is too long" not in rows[2] + rows[4]
    assert page_data((out / "0002.html").read_bytes())["kinds"][0]["keyLabels"][:3] == [
            "the", "red", "car"]


def test_another_cmap_redraws_the_pictures_and_not_the_numbers(tmp_path):
    write_pairs(tmp_path / "pairs.tsv", 3)
    out = tmp_path / "out"
    args = ["export", str(tmp_path / "pairs.tsv"), "-d", str(out), "-f", "npz", "-f", "json"]
    assert runner.invoke(app, args).exit_code == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.glob("000*")}
    result = runner.invoke(app, args + ["--cmap", "magma"])  # the numbers have no colours
    assert "0 pairs drawn, 3 done before" in result.stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("000*")} == before
    result = runner.invoke(app, args + ["-f", "png", "--cmap", "magma"])
    assert "3 pairs drawn, 0 done before" in result.stderr
    pictures = {path.name: path.stat().st_mtime_ns for path in out.glob("000*.png")}
    result = runner.invoke(app, args + ["-f", "png", "--cmap", "cividis"])  # other options:
    assert "3 pairs drawn, 0 done before" in result.stderr  # other pictures, the same numbers
    now = {path.name: path.stat().st_mtime_ns for path in out.glob("000*")}
    assert all(now[name] != pictures[name] for name in pictures)
    assert {name: now[name] for name in before} == before
    assert sorted(set(links_of(out / "index.html"))) == sorted(
        f"000{n}.{fmt}" for n in (1, 2, 3) for fmt in ("png", "npz", "json"))


def test_the_line_function_is_a_task_an_engine_can_map(tmp_path):
    settings = export.Settings(tmp_path, ("npz",), model="translate", pairs_name="p.tsv")
    export.prepare(settings)
    line = Line(3, "the black cat", "le chat noir")
    first = export.render_line(settings, line)
    assert first.files == {"npz": "0003.npz"} and not first.skipped and first.error is None
    again = export.render_line(settings, line)
    assert again.skipped and again.files == first.files
    record = json.loads((tmp_path / export.RECORDS / "0003.json").read_text())
    assert record["source"] == "the black cat" and record["files"] == {"npz": "0003.npz"}


# --- the workers ---------------------------------------------------------------------------

# What a test's stand-in for export.render_line saw, in the process that ran it. The stand-ins
# are module-level functions: a pool's worker finds them by name.
DRAWN_HERE: list[int] = []
THREADS: dict[str, int] = {}
_RENDER_LINE = export.render_line


def _line_here(settings, line):
    DRAWN_HERE.append(line.number)
    return _RENDER_LINE(settings, line)


def _threads_counted(settings, line):
    THREADS.setdefault(settings.out_dir.name, threading.active_count())
    return _RENDER_LINE(settings, line)


def test_the_command_forks_its_workers_after_drawing_the_first_line_here(tmp_path,
                                                                          monkeypatch):
    """Forked, a worker starts in milliseconds with torch, the model and the renderer that
    the first line loaded; spawned, it imports torch again (1-2 s: longer than a hundred
    pages take to draw). Forked while another thread runs (a progress bar's), it could
    inherit a lock held for ever: the command's bar runs none."""
    started = []
    start_pool = worker_pool._start_pool
    DRAWN_HERE.clear()

    def noted(jobs):
        pool = start_pool(jobs)
        started.append((pool._mp_context.get_start_method(), threading.active_count(), jobs,
                        list(DRAWN_HERE)))
        return pool

    monkeypatch.setattr(worker_pool, "_start_pool", noted)
    monkeypatch.setattr(worker_pool, "cores", lambda: 4)  # 3 jobs, whatever the machine
    monkeypatch.setattr(export, "render_line", _line_here)  # the workers' copies too: forked
    write_pairs(tmp_path / "pairs.tsv", 5)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d", str(out),
                                 "-f", "npz", "-f", "html", "--jobs", "3"])
    assert result.exit_code == 0, result.stderr
    assert "5/5" in result.stderr and "5 pairs drawn, 0 done before" in result.stderr
    assert started == [("fork", 1, 3, [1])]  # while one thread ran, after line 1, here
    assert DRAWN_HERE == [1]
    assert sorted(path.name for path in out.glob("*.npz")) == [f"000{n}.npz" for n in
                                                              range(1, 6)]


@pytest.mark.process
def test_with_another_thread_running_the_workers_are_spawned_and_draw_alike(tmp_path,
                                                                             monkeypatch):
    pairs = write_pairs(tmp_path / "pairs.tsv", 4)
    settings = export.Settings(tmp_path / "out", ("npz",), use_cache=False)
    export.prepare(settings)
    lines = read_pairs(tmp_path / "pairs.tsv")
    methods = []
    start_pool = worker_pool._start_pool

    def noted(jobs):
        pool = start_pool(jobs)
        methods.append(pool._mp_context.get_start_method())
        return pool

    monkeypatch.setattr(worker_pool, "_start_pool", noted)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        summary = export.run(settings, lines, 2)
    finally:
        stop.set()
        other.join()
    assert methods == ["spawn"]
    assert sorted(outcome.line.number for outcome in summary.outcomes) == [1, 2, 3, 4]
    maps = AttentionMaps.load(tmp_path / "out" / "0003.npz")
    expected = attnviz.trace(pairs[2].source, pairs[2].target, cache=False)
    assert np.array_equal(maps.stack("cross"), expected.stack("cross"))


@pytest.mark.parametrize("ticking", [False, True])
def test_a_ctrl_c_as_the_bar_closes_still_draws_its_last_count(monkeypatch, ticking):
    """A second Ctrl-C as the bar closes (the first one's clean-up closes it) ended rich's
    stop before its last redraw: the count the "stopped: N of M" line speaks of was not on
    the bar. The Ctrl-C is delivered once the bar is closed."""
    import io

    from rich.console import Console
    from rich.live import Live

    from attnviz.cli.text import export_progress

    refresh = Live.refresh

    def interrupted_when_stopping(live):
        if not live.is_started:  # the last redraw, from stop()
            signal.raise_signal(signal.SIGINT)
        refresh(live)

    monkeypatch.setattr(Live, "refresh", interrupted_when_stopping)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with export_progress(Console(file=out, force_terminal=True, width=100), 3,
                             ticking=ticking) as report:
            report(types.SimpleNamespace(skipped=False, error=None))
    shown = out.getvalue()
    assert "1/3" in shown
    assert shown.rindex("\x1b[?25h") > shown.rindex("\x1b[?25l")  # the cursor shown again


def test_the_bar_on_a_terminal_is_redrawn_a_few_times_a_second_not_for_every_line():
    """Lines done before are reported in a burst (thousands in a second); a redraw of the
    bar costs about a millisecond on a terminal, so one redraw a line would cost seconds."""
    import io

    from rich.console import Console

    from attnviz.cli.text import export_progress

    out = io.StringIO()
    lines = 5000
    with export_progress(Console(file=out, force_terminal=True, width=100), lines) as report:
        for _ in range(lines):
            report(types.SimpleNamespace(skipped=True, error=None))
    frames = out.getvalue().count("export ")
    assert 1 <= frames <= 20, frames  # a burst of a fraction of a second: a few redraws
    assert f"{lines}/{lines}" in out.getvalue() and f"{lines} done before" in out.getvalue()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
@pytest.mark.parametrize("platform, cuda, version, method", [
    ("linux", False, (3, 10, 5), "fork"),
    # Before 3.10.5 the pool forked its workers one by one, after its own thread started.
    ("linux", False, (3, 10, 4), "spawn"),
    # macOS's system libraries start threads of their own: Python spawns there by default,
    # since 3.8, as a fork may crash.
    ("darwin", False, (3, 11, 0), "spawn"),
    # CUDA cannot be used in a fork of a process that used it ("Cannot re-initialize CUDA in
    # forked subprocess"): with --device cuda every line the workers drew would fail.
    ("linux", True, (3, 11, 0), "spawn")])
def test_the_workers_are_forked_only_where_a_fork_is_safe(monkeypatch, platform, cuda,
                                                           version, method):
    import torch

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: cuda)
    pool = worker_pool._start_pool(2)
    try:
        assert pool._mp_context.get_start_method() == method
    finally:
        pool.shutdown()


@pytest.mark.parametrize("lines, jobs", [(5, 1), (2, 2), (1, 4)])
def test_one_job_or_too_few_lines_start_no_process(tmp_path, monkeypatch, lines, jobs):
    monkeypatch.setattr(worker_pool, "_start_pool",
                        lambda jobs: pytest.fail("a pool was started"))
    monkeypatch.setattr(worker_pool, "cores", lambda: 4)  # the jobs asked, on any machine
    write_pairs(tmp_path / "pairs.tsv", lines)
    settings = export.Settings(tmp_path / "out", ("npz",))
    export.prepare(settings)
    summary = export.run(settings, read_pairs(tmp_path / "pairs.tsv"), jobs)
    assert len(summary.outcomes) == lines and not summary.failed


@pytest.mark.process
def test_forked_workers_do_not_hang_after_this_process_used_two_threads(tmp_path):
    """The first line runs here on the two threads the variable asks for; GNU OpenMP hangs
    in a fork that then computes on two threads, so the workers compute on one."""
    words = " ".join(f"w{n}" for n in range(300))  # long enough for torch to split the work
    (tmp_path / "pairs.tsv").write_text("".join(f"{words} {n}\t{words}\n" for n in range(4)))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "attnviz", "export", str(tmp_path / "pairs.tsv"), "-d",
         str(out), "-f", "npz", "-m", "random", "--jobs", "2", "--no-cache"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # and the hung workers with it
    assert process.returncode == 0, stderr
    assert len(list(out.glob("*.npz"))) == 4


def test_a_line_that_fails_keeps_its_current_files_and_says_why(tmp_path, monkeypatch):
    """A line whose npz is current and whose new page cannot be made: the npz stays, listed
    beside the error; nothing of another pair is left."""
    settings = export.Settings(tmp_path, ("npz",), model="translate", pairs_name="p.tsv")
    export.prepare(settings)
    line = Line(1, "the black cat", "le chat noir")
    npz = export.render_line(settings, line).files["npz"]
    file_bytes = pipeline.to_bytes

    def no_page(maps, plan, fmt, cmap):
        if fmt == "html":
            raise AttnvizError("the page would be too large")
        return file_bytes(maps, plan, fmt, cmap)

    monkeypatch.setattr(pipeline, "to_bytes", no_page)
    both = export.Settings(tmp_path, ("npz", "html"), model="translate", pairs_name="p.tsv")
    summary = export.run(both, [line])
    assert summary.outcomes[0].error == "p.tsv:1: the page would be too large"
    assert summary.outcomes[0].files == {"npz": npz}
    assert sorted(p.name for p in tmp_path.glob("0001.*")) == ["0001.npz"]
    assert links_of(tmp_path / "index.html") == ["0001.npz"]
    assert "the page would be too large" in (tmp_path / "index.html").read_text()
    assert "le chat noir" in (tmp_path / "index.html").read_text()


@pytest.fixture
def failing_source(monkeypatch):
    """`fail:x` traces every text but those holding "bad", which it refuses."""
    module = types.ModuleType("attnviz.sources.failing")

    class Failing:
        name = "fail:x"

        def fingerprint(self, request):
            return None

        def maps(self, request):
            if "bad" in request.text:
                raise AttnvizError("the text is too long for this model; cut it")
            maps = attnviz.trace(request.text, request.target, model="random", cache=False)
            warnings.warn("a note from the model", AttnvizWarning, stacklevel=2)
            return maps

    module.open = lambda name: Failing()
    monkeypatch.setitem(sys.modules, "attnviz.sources.failing", module)
    monkeypatch.setattr(sources, "SOURCES", [(lambda n: n.startswith("fail:"), "failing"),
                                             *sources.SOURCES])


def test_a_line_that_fails_is_named_and_the_others_are_written(tmp_path, failing_source,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pairs.tsv").write_text("one two\tun deux\na bad line\tx\n<script>x</script>\n")
    result = runner.invoke(app, ["export", "pairs.tsv", "-d", "out", "-f", "npz",
                                 "-m", "fail:x"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "error: pairs.tsv:2: the text is too long for this model; cut it" in lines
    assert "warning: lines 1, 3: a note from the model" in lines
    assert lines[-1] == "error: 1 of 3 pairs could not be drawn (listed above); the others " \
                        "are written"
    assert sorted(p.name for p in Path("out").glob("*.npz")) == ["0001.npz", "0003.npz"]
    index = Path("out/index.html").read_text()
    assert "<i>not done</i>" in index and "a note from the model" in index
    assert "pairs.tsv:2: the text is too long" in index
    assert "<script" not in index and "&lt;script&gt;x&lt;/script&gt;" in index


def test_the_report_names_lines_in_order_whatever_order_they_finished_in(tmp_path, capsys):
    from attnviz.cli.export import report_export as _report_export

    def outcome(number, **fields):
        return export.Outcome(Line(number, "x", None), **fields)

    finished = [outcome(10, warnings=("ten: a note",)), outcome(9, error="p:9: too long"),
                outcome(2, warnings=("two", "2: again")), outcome(11, error="p:11: bad"),
                outcome(1, skipped=True, warnings=("not told again",))]
    with pytest.raises(AttnvizError, match="2 of 5 pairs could not be drawn"):
        _report_export(export.Summary(finished), tmp_path / "index.html")
    assert capsys.readouterr().err.splitlines()[:5] == [
        "warning: line 2: two", "warning: line 2: 2: again", "warning: line 10: ten: a note",
        "error: p:9: too long", "error: p:11: bad"]


def test_a_warning_of_many_lines_is_said_once_with_its_lines(tmp_path, capsys):
    """A render cache that cannot be written warns on every line: said once, not 30 times."""
    from attnviz.cli.export import report_export as _report_export

    cache = "cannot write the render cache; the maps are computed each time"
    finished = [export.Outcome(Line(number, "x", None), {"npz": f"{number:04d}.npz"},
                               warnings=(cache,) + (("odd",) if number == 4 else ()))
                for number in range(30, 0, -1)]
    _report_export(export.Summary(finished), tmp_path / "index.html")
    assert capsys.readouterr().err.splitlines() == [
        f"warning: lines 1, 2, 3, 4, 5 and 25 more: {cache}", "warning: line 4: odd",
        f"wrote {tmp_path / 'index.html'}: 30 pairs drawn, 0 done before"]


def test_when_every_line_fails_none_is_said_to_be_written(tmp_path):
    from attnviz.cli.export import report_export as _report_export

    failed = [export.Outcome(Line(n, "x", None), error=f"p:{n}: too long")
              for n in (1, 2)]
    with pytest.raises(AttnvizError, match=r"^2 of 2 pairs could not be drawn \(listed above\)$"):
        _report_export(export.Summary(failed), tmp_path / "index.html")


def test_an_interrupt_keeps_finished_lines_whole_and_a_rerun_finishes(tmp_path, monkeypatch):
    write_pairs(tmp_path / "pairs.tsv", 6)
    settings = export.Settings(tmp_path / "out", ("npz", "html"), pairs_name="pairs.tsv")
    export.prepare(settings)
    lines = read_pairs(tmp_path / "pairs.tsv")
    write_temporary = files._write_temporary
    calls = []

    def interrupted_while_writing(path, data, temporaries):  # Ctrl-C amid the third line
        write_temporary(path, data, temporaries)
        if path.parent == settings.out_dir and path.suffix in (".npz", ".html"):
            calls.append(path)  # not the cache's files, nor the records
        if len(calls) == 5:  # the third line's first file is written, its second is not
            raise KeyboardInterrupt

    monkeypatch.setattr(files, "_write_temporary", interrupted_while_writing)
    with pytest.raises(KeyboardInterrupt):
        export.run(settings, lines)
    monkeypatch.undo()
    out = settings.out_dir
    assert sorted(p.name for p in out.glob("000*")) == [f"000{n}.{f}" for n in (1, 2)
                                                        for f in ("html", "npz")]
    assert temporaries(out) == []
    assert links_of(out / "index.html") == ["0001.npz", "0001.html", "0002.npz", "0002.html"]
    summary = export.run(settings, lines)
    assert summary.skipped == 2 and len(summary.outcomes) == 6
    assert len(links_of(out / "index.html")) == 12


def test_after_an_interrupt_the_index_links_no_file_of_a_changed_pair(tmp_path, monkeypatch):
    """Lines 1 and 3 change; Ctrl-C comes as line 3 starts: its old files show another pair."""
    write_pairs(tmp_path / "pairs.tsv", 3)
    settings = export.Settings(tmp_path / "out", ("npz",), pairs_name="pairs.tsv")
    export.prepare(settings)
    export.run(settings, read_pairs(tmp_path / "pairs.tsv"))
    texts = (tmp_path / "pairs.tsv").read_text(encoding="utf-8").splitlines()
    texts[0], texts[2] = "the black cat\tle chat noir", "the red car\tla voiture rouge"
    (tmp_path / "pairs.tsv").write_text("\n".join(texts) + "\n", encoding="utf-8")
    lines = read_pairs(tmp_path / "pairs.tsv")
    render_line = export.render_line

    def interrupted_at_line_3(settings, line):
        if line.number == 3:
            raise KeyboardInterrupt
        return render_line(settings, line)

    monkeypatch.setattr(export, "render_line", interrupted_at_line_3)
    with pytest.raises(KeyboardInterrupt):
        export.run(settings, lines)
    out = settings.out_dir
    assert links_of(out / "index.html") == ["0001.npz", "0002.npz"]
    rows = entries_of(out / "index.html")
    assert "the black cat" in rows[1] and "la voiture rouge" in rows[3]
    assert "<i>not done</i>" in rows[3]
    assert AttentionMaps.load(out / "0001.npz").provenance.source_text == "the black cat"
    monkeypatch.undo()
    summary = export.run(settings, lines)
    assert [outcome.skipped for outcome in summary.outcomes] == [True, True, False]
    assert links_of(out / "index.html") == ["0001.npz", "0002.npz", "0003.npz"]
    assert AttentionMaps.load(out / "0003.npz").provenance.source_text == "the red car"


def test_ctrl_c_while_the_index_is_written_still_leaves_an_index_of_every_line_done(
        tmp_path, monkeypatch):
    """Every line drawn, Ctrl-C comes while the index is written (it is the last step, and
    a long one for thousands of lines): the command says "N of M pairs done, listed in
    index.html"; there was no index at all (or the last run's)."""
    write_pairs(tmp_path / "pairs.tsv", 3)
    settings = export.Settings(tmp_path / "out", ("npz",), pairs_name="pairs.tsv")
    export.prepare(settings)
    write_index, calls = export.write_index, []

    def interrupted_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt  # before the index is renamed into place
        return write_index(*args, **kwargs)

    monkeypatch.setattr(export, "write_index", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        export.run(settings, read_pairs(tmp_path / "pairs.tsv"))
    assert links_of(settings.out_dir / "index.html") == ["0001.npz", "0002.npz", "0003.npz"]


@pytest.mark.parametrize("problem", [OSError(28, "No space left on device"),
                                     AttnvizError("cannot write the index: disk full")])
def test_an_index_that_cannot_be_written_does_not_hide_the_interrupt(tmp_path, monkeypatch,
                                                                     problem):
    write_pairs(tmp_path / "pairs.tsv", 3)

    def interrupted(settings, line):
        raise KeyboardInterrupt

    def cannot_write(*args, **kwargs):
        raise problem

    monkeypatch.setattr(export, "render_line", interrupted)
    monkeypatch.setattr(export, "write_index", cannot_write)
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                 str(tmp_path / "out"), "-f", "npz"])
    assert result.exit_code == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "interrupted"
    # Without an interrupt, the index's problem is the run's.
    monkeypatch.setattr(export, "render_line", lambda settings, line: export.Outcome(line))
    with pytest.raises(type(problem)):
        export.run(export.Settings(tmp_path / "out", ("npz",)),
                   read_pairs(tmp_path / "pairs.tsv"))


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def children_of(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, each with its start time (so that a number
    used again by another process is not taken for it)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found[int(entry.name)] = fields[19]
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    running = []
    for pid, started in processes.items():
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[19] == started and fields[0] != "Z":
                running.append(pid)
    return running


def recorded(out: Path) -> list[str]:
    folder = out / export.RECORDS
    return sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []


def export_command(tmp_path: Path, *formats: str, jobs: int = 2, count: int = 30) -> list[str]:
    """``attnviz export`` of ``count`` translate pairs into ``tmp_path / "out"``."""
    write_pairs(tmp_path / "pairs.tsv", count)
    return [sys.executable, "-m", "attnviz", "export", str(tmp_path / "pairs.tsv"), "-d",
            str(tmp_path / "out"), *(part for fmt in formats for part in ("-f", fmt)),
            "--jobs", str(jobs), "--no-cache"]


def export_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def started(command: list[str], output: int = subprocess.PIPE) -> subprocess.Popen:
    """``command`` in a process group of its own, which its workers join."""
    return subprocess.Popen(command, stdout=output, stderr=output, env=export_env(),
                            start_new_session=True)


@pytest.mark.process
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("jobs, signum, to_group, twice", [
    (2, signal.SIGINT, True, False), (2, signal.SIGTERM, False, False),
    (2, signal.SIGTERM, True, False), (2, signal.SIGINT, True, True),
    (1, signal.SIGINT, True, False), (1, signal.SIGTERM, False, False),
    (2, signal.SIGHUP, True, False)])  # the terminal closed: to every process of the command
def test_ctrl_c_or_sigterm_stops_the_export_at_once_and_keeps_every_finished_file(
        tmp_path, jobs, signum, to_group, twice):
    """A real process, stopped once some lines are done: as Ctrl-C does (the terminal signals
    the whole process group), or as kill does (the main process alone); with a second Ctrl-C
    during the clean-up. It ends in seconds, its workers with it, having drawn at most the
    lines under way (no line starts after the signal); the bar, the last line and the index
    count the same lines."""
    count = 30
    command = export_command(tmp_path, "npz", "html", jobs=jobs, count=count)
    out = tmp_path / "out"
    process = started(command)
    try:
        wait_for(lambda: len(recorded(out)) >= 2, 120)
        workers = children_of(process.pid)
        done_then = len(recorded(out))
        for _ in range(1 + twice):
            if to_group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
            time.sleep(0.05)
        _, stderr = process.communicate(timeout=60)  # it ends, its workers with it
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stderr = stderr.decode()
    assert process.returncode == -signum, stderr
    assert len(workers) >= jobs - 1
    wait_for(lambda: not still_running(workers), 2)  # a moment for the kernel to reap them
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.splitlines()[-1] == {signal.SIGINT: "interrupted",
                                       signal.SIGTERM: "terminated",
                                       signal.SIGHUP: "hung up"}[signum]
    assert temporaries(out) == []
    done = recorded(out)
    assert done_then <= len(done) <= done_then + jobs, "lines were started after the signal"
    for stem in done:  # every line recorded is whole
        assert AttentionMaps.load(out / f"{stem}.npz").kinds == ("encoder_self", "decoder_self",
                                                                 "cross")
        assert (out / f"{stem}.html").read_text().rstrip().endswith("</html>")
    assert sorted({link.split(".")[0] for link in links_of(out / "index.html")}) == done
    assert f"{len(done)} of {count} pairs done" in (out / "index.html").read_text()
    assert re.findall(r"(\d+)/30", stderr)[-1] == str(len(done))  # the bar's final count
    assert f"stopped: {len(done)} of {count} pairs done, listed in " in stderr
    if jobs == 2 and not twice and to_group:
        rerun = subprocess.run(command, capture_output=True, text=True, env=export_env(),
                               timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{count - len(done)} pairs drawn, {len(done)} done before" in rerun.stderr
        assert len(links_of(out / "index.html")) == 2 * count
        assert temporaries(out) == []


@pytest.mark.process
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_killed_ends_the_export_with_a_message_and_keeps_every_finished_file(
        tmp_path):
    """The kernel's out-of-memory killer sends SIGKILL to one worker: the export says so in
    one line (not "terminated": the pool stops the other worker with SIGTERM), ends 1, stops
    the other worker, and keeps the lines done, whole and listed."""
    out = tmp_path / "out"
    process = started(export_command(tmp_path, "npz", "png"))
    try:
        wait_for(lambda: len(recorded(out)) >= 3 and len(children_of(process.pid)) == 2, 120)
        workers = children_of(process.pid)
        os.kill(min(workers), signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stderr = stderr.decode()
    assert process.returncode == 1, stderr
    assert stderr.splitlines()[-1] == (
        "error: a worker process died (out of memory?); the lines done so far are kept: run "
        "the export again, with fewer --jobs")
    assert "Traceback" not in stderr
    wait_for(lambda: not still_running(workers), 2)
    assert temporaries(out) == []
    done = recorded(out)
    for stem in done:
        assert AttentionMaps.load(out / f"{stem}.npz").kinds == ("encoder_self", "decoder_self",
                                                                 "cross")
    assert sorted({link.split(".")[0] for link in links_of(out / "index.html")}) == done


def _deaf_to_sigterm(ready: str) -> None:
    """A worker stuck where SIGTERM cannot stop it (in C code, say)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(ready).touch()
    time.sleep(60)


@pytest.mark.process
def test_a_worker_killed_after_the_grace_is_not_counted_as_ended_by_sigterm(tmp_path,
                                                                            monkeypatch):
    """Else an export whose worker died would say "terminated" when the other one had to be
    killed: only the workers that ended by SIGTERM tell that someone sent it."""
    # Long enough for the other worker to end by SIGTERM on a busy machine (0.5 s was not).
    monkeypatch.setattr(worker_pool, "STOP_GRACE", 3.0)
    pool = worker_pool._start_pool(2)
    ready = tmp_path / "ready"
    pool.submit(_deaf_to_sigterm, str(ready))
    wait_for(ready.exists, 60)
    workers = list(pool._processes.values())
    ended = worker_pool._stop(pool)
    assert len(workers) == 2 and len(ended) == 1
    assert ended[0].exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM)
    deaf = next(worker for worker in workers if worker not in ended)
    wait_for(lambda: deaf.exitcode is not None, 5)  # the pool's thread may reap it
    assert deaf.exitcode == -signal.SIGKILL


def test_export_ticks_its_bar_on_a_thread_only_when_it_forks_no_worker(tmp_path, monkeypatch):
    """One job: the bar's thread redraws it while a long line is drawn. More: no thread, so
    that the workers may be forked."""
    THREADS.clear()
    monkeypatch.setattr(export, "render_line", _threads_counted)
    write_pairs(tmp_path / "pairs.tsv", 3)
    for jobs in (1, 2):
        result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                     str(tmp_path / f"jobs{jobs}"), "-f", "npz", "--jobs",
                                     str(jobs)])
        assert result.exit_code == 0, result.stderr
    assert THREADS == {"jobs1": 2, "jobs2": 1}


@pytest.mark.process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_the_workers_end_when_the_main_process_is_killed(tmp_path):
    """SIGKILL to the main process (the out-of-memory killer's choice, or kill -9): its
    workers used to draw the lines queued to them, then wait for more for ever, each
    holding a model, as orphans. They end within seconds, leaving no temporary file."""
    out = tmp_path / "out"
    process = started(export_command(tmp_path, "npz", "png"), subprocess.DEVNULL)
    workers = {}
    try:
        wait_for(lambda: len(recorded(out)) >= 2 and len(children_of(process.pid)) == 2, 120)
        workers = children_of(process.pid)
        process.kill()
        process.wait(timeout=10)
        wait_for(lambda: not still_running(workers), 10 + worker_pool.STOP_GRACE)
    finally:
        for pid in still_running(workers):
            os.kill(pid, signal.SIGKILL)
    assert temporaries(out) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_worker_whose_main_process_ended_before_it_started_ends_at_once():
    """The main process killed while a worker starts, before it asks for the parent-death
    signal: the worker sees it has another parent, and ends."""
    code = ("import os; from attnviz.batch import pool; pool._start_worker(os.getppid() + 1); "
            "print('went on')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (143, "", "")


@pytest.mark.process
def test_a_worker_stopped_amid_a_line_leaves_no_file_of_it(tmp_path):
    """SIGTERM, as the main process sends it to stop a worker, while the worker writes a
    line's files: the worker ends at once, leaving neither a temporary file, nor a file of
    the line, nor its record."""
    write_pairs(tmp_path / "pairs.tsv", 1)
    out = tmp_path / "out"
    code = f"""
import sys, time
from pathlib import Path
import functools
from attnviz.batch import export, pool
from attnviz.io import atomic as files
from attnviz.io.pairs import read_pairs
settings = export.Settings(Path({str(out)!r}), ("npz", "html"), use_cache=False)
export.prepare(settings)
write_temporary = files._write_temporary
def slow(path, data, temporaries):
    write_temporary(path, data, temporaries)
    if path == settings.out_dir / "0001.html":  # the second file; the first is written
        print("writing", flush=True)
        time.sleep(60)
files._write_temporary = slow
pool._start_worker()
pool._work(functools.partial(export.render_line, settings),
           read_pairs(Path({str(tmp_path / "pairs.tsv")!r}))[0])
print("went on", flush=True)
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert process.stdout.readline() == "writing\n", process.stderr.read()
        assert len(temporaries(out)) == 2  # the line's files, not yet in place
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert temporaries(out) == []
    assert sorted(path.name for path in out.iterdir()) == [export.RECORDS]
    assert list((out / export.RECORDS).iterdir()) == []


# --- a worker loads its model once ------------------------------------------------------------

def test_an_own_model_file_is_read_once_for_many_texts(model_file, monkeypatch):
    import attnviz.model.checkpoint

    loads = []
    load = attnviz.model.checkpoint.checkpoint_from_bytes
    monkeypatch.setattr(attnviz.model.checkpoint, "checkpoint_from_bytes",
                        lambda *args: loads.append(args) or load(*args))
    source = sources.open_source(str(model_file))
    first = source.maps(sources.Request("the black cat", "le chat", "decoder"))
    second = source.maps(sources.Request("the red car", "la voiture", "decoder"))
    assert len(loads) == 1
    assert first.source_tokens != second.source_tokens
    again = sources.open_source(str(model_file)).maps(
        sources.Request("the red car", "la voiture", "decoder"))
    assert np.array_equal(again.cross, second.cross)  # kept, not changed by use


def test_a_hugging_face_model_is_loaded_once_for_many_texts(monkeypatch, tmp_path_factory):
    pytest.importorskip("transformers", reason='needs the hf extra: pip install -e ".[hf]"')
    from attnviz.sources.huggingface import source as hf
    from tests.test_huggingface import gpt2

    folder = gpt2.__wrapped__(tmp_path_factory)
    loads = []
    for method in ("_load_model", "_tokenizer", "_config"):
        real = getattr(hf.HuggingFaceModel, method)
        monkeypatch.setattr(hf.HuggingFaceModel, method,
                            lambda self, *args, real=real, name=method:
                            loads.append(name) or real(self, *args))
    source = sources.open_source(f"hf:{folder}")
    first = source.maps(sources.Request("the black cat"))
    second = source.maps(sources.Request("the red car sees"))
    assert sorted(loads) == ["_config", "_load_model", "_tokenizer"]
    assert first.target_tokens != second.target_tokens


@pytest.mark.process
@pytest.mark.parametrize("variables, torch_first", [
    ({}, False), ({"MKL_NUM_THREADS": "2"}, False),
    ({"MKL_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}, True)])
def test_a_worker_runs_torch_on_one_thread_and_leaves_ctrl_c_to_the_main_process(
        variables, torch_first):
    """Whatever the thread variables say (torch reads MKL_NUM_THREADS first): the processes
    are the parallelism, and two workers on two threads each fight for two cores."""
    code = ("import io, signal, sys; " + "import torch; " * torch_first +
            "sys.stderr = io.StringIO(); "  # as a progress bar's stand-in, which a fork copies
            "from attnviz.batch import pool; pool._start_worker(); "
            "print('torch' in sys.modules); import torch; print(torch.get_num_threads()); "
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN); "
            "print(sys.stderr is sys.__stderr__)")
    env = {name: value for name, value in os.environ.items()
           if name not in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**env, **variables})
    assert result.returncode == 0, result.stderr
    # torch only when a line needs it
    assert result.stdout.split() == [str(torch_first), "1", "True", "True"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_the_folder_is_made(tmp_path):
    """It used to make the folder and an index, draw a progress bar, and fail every line."""
    write_pairs(tmp_path / "pairs.tsv", 3)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                      str(tmp_path / "out"), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr == ("error: --device cuda was asked for, but torch sees no CUDA GPU "
                             "here; use cpu (or auto)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, extra, fragments", [
    # A NUL was drawn as an <unk> token, with a warning; attnviz train refuses it at its line.
    ("the cat\tle chat\nthe\0dog\tle chien\n", [],
     ["pairs.tsv:2: refused character U+0000", "binary or UTF-16"]),
    ("the cat\nthe\x1b[2Jdog\n", [], ["pairs.tsv:2: refused character U+001B"]),
    # An unknown model made the folder and its index and drew a progress bar first.
    ("the cat\n", ["-m", "nope"], ["unknown model 'nope'"]),
    ("the cat\n", ["-m", "missing.safetensors"], ["missing.safetensors"]),
])
def test_export_refuses_before_making_the_folder(tmp_path, content, extra, fragments):
    (tmp_path / "pairs.tsv").write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                      str(tmp_path / "out"), *extra])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert all(fragment in result.stderr for fragment in fragments), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


HOLDER = """
import sys
from pathlib import Path
from attnviz.batch import export
settings = export.Settings(Path(sys.argv[1]), ("npz",))
with export.one_writer(settings):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


@pytest.mark.process
def test_a_second_export_into_a_folder_being_written_is_refused_and_changes_nothing(tmp_path):
    """Two exports into one folder at once (the same pairs by translate and by reverse) both
    ended 0, and a line's npz held one model's maps beside the other's record, which the next
    run took as done. While a process writes the folder, an export is refused at once,
    naming it, and writes nothing; once it ends, the export runs."""
    out = tmp_path / "out"
    command = [*export_command(tmp_path, "npz", jobs=1, count=3), "-m", "reverse"]
    assert subprocess.run(command[:-2], capture_output=True, env=export_env(),
                          timeout=120).returncode == 0  # translate's files, recorded
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=export_env())
    try:
        assert holder.stdout.readline() == "held\n"
        second = subprocess.run(command, capture_output=True, text=True, env=export_env(),
                                timeout=120)
    finally:
        holder.communicate(timeout=60)  # stdin closed: it lets go, and ends
    assert second.returncode == 1, second.stderr
    assert second.stderr == (f"error: output folder {out} is being written by another export "
                             f"(process {holder.pid}); wait until it ends, or choose another "
                             "--out-dir\n")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()
            and path.name != export.LOCK} == {path: data for path, data in before.items()
                                              if path.name != export.LOCK}
    rerun = subprocess.run(command, capture_output=True, text=True, env=export_env(),
                           timeout=120)
    assert rerun.returncode == 0 and "3 pairs drawn, 0 done before" in rerun.stderr, rerun.stderr
    for stem in recorded(out):
        assert AttentionMaps.load(out / f"{stem}.npz").provenance.model == "reverse"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="flock(2)")
def test_an_export_into_a_folder_whose_lock_is_held_writes_nothing(tmp_path):
    import fcntl

    (tmp_path / "pairs.tsv").write_text("the cat\n", encoding="utf-8")
    (tmp_path / "out" / export.RECORDS).mkdir(parents=True)
    lock = tmp_path / "out" / export.RECORDS / export.LOCK
    lock.write_text("4242\n")
    with open(lock) as another:  # as another process holds it: an open file of its own
        fcntl.flock(another, fcntl.LOCK_EX)
        result = CliRunner().invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                          str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr == (f"error: output folder {tmp_path / 'out'} is being written by "
                             "another export (process 4242); wait until it ends, or choose "
                             "another --out-dir\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [export.RECORDS]
    again = CliRunner().invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                     str(tmp_path / "out")])
    assert again.exit_code == 0, again.stderr


def test_an_export_clears_the_temporaries_a_killed_export_left(tmp_path, monkeypatch):
    """Temporary files left by a SIGKILL (a line's files, its record) stayed for ever. Among
    the records, which only an export writes and the lock keeps to this one, every one goes;
    beside the files, where another command may be writing one, the stale ones."""
    out = tmp_path / "out"
    (out / export.RECORDS).mkdir(parents=True)
    (tmp_path / "pairs.tsv").write_text("the cat\n", encoding="utf-8")
    record = out / export.RECORDS / ".attnviz-0123abcd.tmp"
    record.write_bytes(b"{")
    beside = out / ".attnviz-4567abcd.tmp"
    beside.write_bytes(b"half a png")
    settings = export.Settings(out, ("npz",))
    export.run(settings, read_pairs(tmp_path / "pairs.tsv"))
    assert not record.exists() and beside.exists()  # beside the files: too fresh to tell
    monkeypatch.setattr(files, "STALE_AFTER", -1.0)  # as if an hour had gone by
    export.run(settings, read_pairs(tmp_path / "pairs.tsv"))
    assert not beside.exists()
    assert temporaries(out) == []


def test_more_jobs_than_cores_are_cut_to_the_cores_with_a_word(tmp_path, monkeypatch):
    """--jobs 12 on 2 cores forked 12 workers (760 MB), each waiting for the others."""
    started = []
    start_pool = worker_pool._start_pool

    def noted(jobs):
        started.append(jobs)
        return start_pool(jobs)

    monkeypatch.setattr(worker_pool, "_start_pool", noted)
    monkeypatch.setattr(worker_pool, "cores", lambda: 2)
    write_pairs(tmp_path / "pairs.tsv", 5)
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d",
                                 str(tmp_path / "out"), "-f", "npz", "--jobs", "12"])
    assert result.exit_code == 0, result.stderr
    assert started == [2]
    lines = result.stderr.splitlines()
    assert lines[0] == ("warning: 12 jobs were asked for, and this machine lets attnviz use 2 "
                        "CPU cores: drawing 2 at once (more processes than cores only wait for "
                        "one another, each holding a model)")
    assert "5 pairs drawn" in lines[-1]
    with pytest.warns(AttnvizWarning, match="12 jobs were asked for"):
        assert worker_pool.capped(12) == 2
    assert worker_pool.capped(2) == 2 and 1 <= worker_pool.cores() <= (os.cpu_count() or 1)


def test_a_folder_where_a_lines_file_goes_fails_that_line_alone_in_exports_words(tmp_path):
    """It stopped the whole export at line 1 with advice meant for decode -o ("give a file
    name such as .../0001.npz/attention.png"), and wrote index.html although "no file was
    changed"."""
    (tmp_path / "pairs.tsv").write_text("the cat\nthe dog\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "0001.npz").mkdir(parents=True)
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d", str(out), "-f",
                                 "npz"])
    assert result.exit_code == 1
    assert (f"error: {tmp_path / 'pairs.tsv'}:1: {out / '0001.npz'} is a folder, where the "
            "line's .npz file goes; move it away, or export into another folder\n"
            ) in result.stderr
    assert "attention.png" not in result.stderr and "no file was changed" not in result.stderr
    assert "1 pairs drawn, 0 done before, 1 failed" in result.stderr
    assert (out / "0002.npz").is_file() and (out / "0001.npz").is_dir()
    assert links_of(out / "index.html") == ["0002.npz"]


@pytest.mark.parametrize("case", ["index is a folder", "dangling link"])
def test_an_output_folder_that_cannot_be_one_is_refused_in_exports_words(tmp_path, case):
    (tmp_path / "pairs.tsv").write_text("the cat\n", encoding="utf-8")
    out = tmp_path / "out"
    if case == "index is a folder":
        (out / "index.html").mkdir(parents=True)
        said = (f"error: {out / 'index.html'} is a folder, where the export's index goes; "
                "move it away, or choose another --out-dir\n")
    else:
        out.symlink_to(tmp_path / "nowhere")  # "File exists", it said
        said = (f"error: output folder {out} is a link to {tmp_path / 'nowhere'}, which does "
                "not exist; make that folder, or choose another --out-dir\n")
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["export", str(tmp_path / "pairs.tsv"), "-d", str(out)])
    assert (result.exit_code, result.stderr) == (1, said)
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_lines_can_be_skipped_each_named_on_stderr_and_in_the_index(tmp_path):
    """export refused a whole file for one bad line; --skip-bad-lines leaves each out,
    named, and draws the others (the strict default stays)."""
    pairs = tmp_path / "pairs.tsv"
    pairs.write_bytes(b"the cat\tle chat\n\tno source\nthe \x01dog\na\tb\tc\nthe red car\n"
                      b"bad \xff line\n")
    out = tmp_path / "out"
    strict = runner.invoke(app, ["export", str(pairs), "-d", str(out), "-f", "npz"])
    assert strict.exit_code == 1 and not out.exists()
    result = runner.invoke(app, ["export", str(pairs), "-d", str(out), "-f", "npz",
                                 "--skip-bad-lines"])
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [
        f"warning: {pairs}:2: skipped: the source is empty; write one pair a line: "
        "source<TAB>target, or the source alone to let the model write the target",
        f"warning: {pairs}:3: skipped: refused character U+0001 (a control character: remove "
        "it, a pairs file is plain text)",
        f"warning: {pairs}:4: skipped: more than one tab; write one pair a line: "
        "source<TAB>target, or the source alone to let the model write the target",
        f"warning: {pairs}:6: skipped: the line is not UTF-8 text; save the file as UTF-8"]
    assert result.stderr.splitlines()[-1].endswith(
        "2 pairs drawn, 0 done before, 4 bad lines skipped")
    assert sorted(p.name for p in out.glob("*.npz")) == ["0001.npz", "0005.npz"]
    rows = entries_of(out / "index.html")
    assert "skipped: refused character U+0001" in rows[3] and "the \\x01dog" in rows[3]
    assert "skipped: the line is not UTF-8 text" in rows[6]
    assert "2 of 6 pairs done" in (out / "index.html").read_text()


def test_more_than_ten_skipped_lines_are_counted_after_the_tenth(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the cat\n" + "a\tb\tc\n" * 12, encoding="utf-8")
    result = runner.invoke(app, ["export", str(pairs), "-d", str(tmp_path / "out"), "-f",
                                 "npz", "--skip-bad-lines"])
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 11 and warned[-1] == (
        f"warning: and 2 more lines skipped, listed in {tmp_path / 'out' / 'index.html'}")
