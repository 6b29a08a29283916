"""The page at 512 tokens: its size, the time to write it, and how headless Chromium draws it.

    python benchmarks/page.py            # about a minute on 2 cores
    python benchmarks/page.py --quick    # fewer repetitions

The maps are those of the random model (2 layers x 4 heads, the default sizes) on 511 words
and <eos> as the source and 511 words after <bos> as the target: every kind at 512 x 512.
Timings inside the browser are the page's own (performance.now(), kept in
the view's root.attnviz.timings): when its first heatmap is drawn, counted from the start of the
navigation, and how long each redraw takes. Needs Debian's chromium and chromium-driver, and
selenium (the test extra). For comparison, on this machine: bertviz's page of the same maps
is 244 MB and takes 5.3 s to build; attnview's of one layer of cross-attention, 23 MB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/chromium.py

from benchmarks.run import ATTNVIZ, alternate, report, summary  # noqa: E402

WORDS = " ".join(f"w{i}" for i in range(511))  # + <eos>: 512 source tokens
TARGET = " ".join(f"v{i}" for i in range(511))  # after <bos>: 512 decoder tokens


def written(repeats: int, scratch: Path) -> Path:
    """Size and time of the page, beyond the forward pass; returns the page's path."""
    import attnviz
    from attnviz.io.atomic import write_atomically
    from attnviz.render import page

    print("the page of 3 kinds x 2 layers x 4 heads at 512 tokens:", flush=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = attnviz.trace(WORDS, TARGET, model="random", cache=False)
    forward = time.perf_counter() - started
    assert all(maps.stack(kind).shape == (2, 4, 512, 512) for kind in maps.kinds)
    path = scratch / "view.html"
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        write_atomically(path, page.to_bytes(maps))
        times.append(time.perf_counter() - started)
    size = path.stat().st_size
    print(f"  forward pass (the maps) {forward:.2f} s; page {size / 1e6:.2f} MB in "
          f"{statistics.median(times):.2f} s (median of {repeats})", flush=True)
    report("page size at 512 tokens", size / 1e6, 10.0, "MB")
    report("page written, beyond the forward pass (median)", statistics.median(times), 1.0, "s")
    report("bertviz's page of the same maps / this page (size)", 244e6 / size, None)
    maps.save(scratch / "maps.npz")
    return path


def command_line(repeats: int, scratch: Path) -> None:
    """The same through the CLI: decode -o view.html against decode -o view.npz, alternately,
    both reading the maps from the render cache (so neither runs the forward pass, whose
    seconds on a shared machine vary more than the page takes)."""
    from benchmarks.run import run_once

    warm = {"ATTNVIZ_CACHE_DIR": str(scratch / "cache"), "OMP_NUM_THREADS": "1"}
    base = [ATTNVIZ, "decode", WORDS, "-t", TARGET, "-m", "random", "-o"]
    run_once(base + [str(scratch / "warm.npz")], warm)
    html, npz, _, _ = alternate(base + [str(scratch / "a.html")], base + [str(scratch / "a.npz")],
                                repeats, env_a=warm, env_b=warm)
    print(f"  maps from the cache: decode -o view.html {statistics.median(html):.2f} s, "
          f"decode -o view.npz {statistics.median(npz):.2f} s (medians of {repeats}, "
          "alternating)", flush=True)
    report("decode -o view.html minus decode -o view.npz, maps from the cache (medians)",
           statistics.median(html) - statistics.median(npz), 1.0, "s")


# Changes a control the way a person does (its change event), then waits until the
# browser has painted the result, so that the page's ...Painted timings are one per change.
CHANGE = """
const [id, values, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  for (const value of values) {
    const control = document.querySelector(`.attnviz-view .av-${id}`);
    control.value = value;
    control.dispatchEvent(new Event("change"));
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 20)));
  }
  done();
})();"""
TIMINGS = "return document.querySelector('.attnviz-view').attnviz.timings"
# Hovers the head view token by token (it is taller than the window, so mouse events are
# sent to the canvas at each token's place), waiting for each to be painted.
HOVER_TOKENS = """
const done = arguments[arguments.length - 1];
(async () => {
  const view = document.querySelector(".attnviz-view");
  const canvas = view.querySelector(".av-heads-hover");
  for (let token = 0; token < 512; token += 9) {
    const point = view.attnviz.tokenCenter(token % 2 ? "query" : "key", token);
    const box = canvas.getBoundingClientRect();
    canvas.dispatchEvent(new MouseEvent("mousemove", {
      clientX: box.left + point.x, clientY: box.top + point.y, bubbles: true}));
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 20)));
  }
  done();
})();"""


def browser(path: Path, repeats: int) -> None:
    """First heatmap, redraws and hovers, as the page measures them in headless Chromium."""
    from selenium.webdriver.common.action_chains import ActionChains

    from tests import chromium

    why = chromium.missing()
    if why:
        print(f"  (no browser: {why})")
        return
    print("in headless Chromium:", flush=True)
    driver = chromium.driver()
    driver.set_script_timeout(300)
    try:
        first, painted, outside, decode = [], [], [], []
        for _ in range(repeats):
            started = time.perf_counter()
            state = chromium.open_page(driver, path)
            outside.append(time.perf_counter() - started)
            assert state["ready"], state
            time.sleep(0.2)
            timings = driver.execute_script(TIMINGS)
            first.append(timings["firstDraw"])
            painted.append(timings["firstPainted"])
            decode.append(timings["decode"])
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        print(f"  first heatmap drawn {statistics.median(first):.0f} ms and painted "
              f"{statistics.median(painted):.0f} ms after navigation started (medians of "
              f"{repeats} loads; decoding the weights took {statistics.median(decode):.0f} "
              f"ms); get() to drawn, seen from selenium "
              f"{statistics.median(outside) * 1000:.0f} ms", flush=True)
        report("first heatmap painted in Chromium, from navigation start (median)",
               statistics.median(painted) / 1000, 2.0, "s")

        driver.execute_async_script(CHANGE, "kind", ["cross"])
        for head in ["0", "1", "2", "3", "mean"]:  # every head at every scale
            driver.execute_async_script(CHANGE, "head", [head])
            driver.execute_async_script(CHANGE, "scale", ["panel", "shared", "unit", "row"])
        canvas = driver.find_element("css selector", ".av-heatmap-hover")
        driver.execute_script("arguments[0].scrollIntoView()", canvas)
        layout = driver.execute_script(
            "return document.querySelector('.attnviz-view').attnviz.layout()")
        size = canvas.size
        actions = ActionChains(driver)
        for step in range(60):  # the mouse across the map, cell to cell
            x = layout["left"] + (step * 8.3 % (512 * layout["cell"]))
            y = layout["top"] + (step * 11.7 % (512 * layout["cell"]))
            actions.move_to_element_with_offset(canvas, round(x - size["width"] / 2),
                                                round(y - size["height"] / 2))
            actions.pause(0.05)
        actions.perform()
        driver.find_element("css selector", '.av-show[data-view="heads"]').click()
        driver.execute_async_script(CHANGE, "head", ["0", "1", "2", "3", "mean"])
        driver.execute_async_script(HOVER_TOKENS)
        time.sleep(0.3)
        timings = driver.execute_script(TIMINGS)
        limit = driver.find_element("css selector", ".av-heads-limit").text
        for name, what, target in (
                ("hovers", "heatmap hover (tooltip, cell outline)", 50),
                ("draws", "heatmap redraw (another head or scale)", None),
                ("headHovers", "head view hover (one token's lines)", 50),
                ("headDraws", "head view redraw", None)):
            script, shown = timings[name], timings[f"{name}Painted"]
            print(f"  {what}: script median {statistics.median(script):.1f} ms, max "
                  f"{max(script):.1f} ms; painted median {statistics.median(shown):.1f} ms, "
                  f"max {max(shown):.1f} ms ({len(shown)} times)", flush=True)
            report(f"{what}, until painted, median", statistics.median(shown), target, "ms")
            report(f"{what}, until painted, max", max(shown), target, "ms")
        print(f"  head view: {limit}")
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        command_line(repeats, Path(scratch))
        path = written(repeats, Path(scratch))
        browser(path, repeats)
    chromium_version = subprocess.run(["chromium", "--version"], capture_output=True,
                                      text=True).stdout.strip() or "no Chromium"
    summary(started, chromium_version)


if __name__ == "__main__":
    main()
