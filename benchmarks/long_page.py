"""The page of one layer, every head, at 2,048 tokens: its size, and whether headless Chromium
opens it and stays responsive (redraws of another head or scale, hovers), as a language
model's long map looks (most of every row on the first token).

    python benchmarks/long_page.py

The maps: one layer of masked self-attention, 9 heads (SmolLM2's), 2,048 x 2,048, random
weights with an attention sink, as a Hugging Face model traced with ``--layer L`` keeps
them. Timings are the page's own (window.attnviz.timings), as in benchmarks/page.py. Needs
Debian's chromium and chromium-driver, and selenium (the test extra).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/chromium.py

from benchmarks.page import CHANGE  # noqa: E402

TOKENS, HEADS = 2048, 9


def maps():
    from attnviz.maps.data import AttentionMaps

    rng = np.random.default_rng(0)
    weights = rng.random((1, HEADS, TOKENS, TOKENS), dtype=np.float32) ** 8
    weights *= np.tril(np.ones((TOKENS, TOKENS), dtype=np.float32))
    weights[..., 0] += weights.sum(-1) * 4  # the sink: four fifths of every row
    weights /= weights.sum(-1, keepdims=True)
    return AttentionMaps([], [f"t{i}" for i in range(TOKENS)], decoder_self=weights,
                         kept={"decoder_self": {"layers": [15], "heads": list(range(HEADS))}})


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    import attnviz
    from tests import chromium

    why = chromium.missing()
    if why:
        raise SystemExit(f"no browser: {why}")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "long.html"
        started = time.perf_counter()
        path.write_text(attnviz.page(maps(), scale="log"), encoding="utf-8")
        print(f"page of 1 layer x {HEADS} heads at {TOKENS:,} tokens: "
              f"{path.stat().st_size / 1024**2:.1f} MB, written in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        driver = chromium.driver()
        driver.set_script_timeout(600)
        try:
            state = chromium.open_page(driver, path, timeout=120)
            assert state["ready"], state
            time.sleep(0.5)
            timings = driver.execute_script("return window.attnviz.timings")
            print(f"first heatmap painted {timings['firstPainted'] / 1000:.2f} s after "
                  f"navigation started (decoding the weights: {timings['decode'] / 1000:.2f} s)")
            driver.execute_async_script(CHANGE, "head", ["0", "4", "8", "mean"])
            driver.execute_async_script(CHANGE, "scale", ["panel", "row", "log"])
            canvas = driver.find_element("id", "heatmap-hover")
            driver.execute_script("arguments[0].scrollIntoView()", canvas)
            layout = driver.execute_script("return window.attnviz.layout()")
            size = canvas.size
            actions = ActionChains(driver)
            for step in range(40):
                x = layout["left"] + (step * 17.3 % (TOKENS * layout["cell"]))
                y = layout["top"] + (step * 23.9 % (TOKENS * layout["cell"]))
                actions.move_to_element_with_offset(canvas, round(x - size["width"] / 2),
                                                    round(y - size["height"] / 2))
                actions.pause(0.05)
            actions.perform()
            time.sleep(0.3)
            timings = driver.execute_script("return window.attnviz.timings")
            for name, what in (("drawsPainted", "redraw (another head or scale), until painted"),
                               ("hoversPainted", "hover (tooltip, cell outline), until painted")):
                values = timings[name]
                print(f"{what}: median {statistics.median(values):.0f} ms, max "
                      f"{max(values):.0f} ms ({len(values)} times)")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
