#!/usr/bin/env bash
# Redraws the pictures of the README from the shipped models, and executes the example
# notebook in place, with its outputs: bash docs/make-pictures.sh
# The MiniLM picture needs the model's files (see the README's Hugging Face section); it is
# redrawn when MINILM names their folder, and the SmolLM2 one when SMOLLM2 names its .gguf file.
set -euo pipefail
cd "$(dirname "$0")"
attnviz decode "the small black cats see a red car" -o translate.png
attnviz encode "the small black cats see a red car" -o translate-encoder.png
attnviz decode "the small black cats see a red car" --layer all --head all -o translate-grid.png
attnviz decode "tuesday, march 3, 2026" -m dates --kind cross -o dates-cross.png
attnviz decode "the old dog sees a small red car" -m reverse --kind cross -o reverse-cross.png
COLUMNS=100 attnviz decode "the small black cats see a red car" --kind cross > terminal.txt
attnviz explain "the small black cats see a red car" --kind self -o explain.png
attnviz encode "the small black cats see a red car" --rollout -o rollout.png
attnviz decode "the small black cats see a red car" -o decoding.gif
# One frame of the animation, as a still: step 4, "chats" writes "noirs" (matplotlib brings
# Pillow, so python here is the one attnviz runs with).
python -c 'from PIL import Image; gif = Image.open("decoding.gif"); gif.seek(3); gif.convert("RGB").save("decoding-frame.png")'
attnviz heads "the small black cats see a red car" --induction -o translate-heads.png
if [ -n "${MINILM:-}" ]; then
    attnviz encode "the black cat sees the red car" -m "hf:$MINILM" -o minilm-encoder.png
    text="the black cat sees the red car, and the small dog runs after it into the old house by the river"
    attnviz heads "$text" -m "hf:$MINILM" --induction -o minilm-heads.png
    COLUMNS=100 attnviz heads "$text" -m "hf:$MINILM" --induction > minilm-heads.txt
fi
if [ -n "${SMOLLM2:-}" ]; then
    attnviz decode "$(cat long-prompt.txt)" -m "$SMOLLM2" --layer 20 --sink renormalised \
        --scale log --no-cache -o smollm2-long.png
fi
# The page (-o view.html) in headless Chromium, as its browser test drives it: needs Debian's
# chromium and chromium-driver, and selenium.
ATTNVIZ_PAGE_PICTURE="$PWD/page.png" python -m pytest -q ../tests/test_page_browser.py \
    -k head_view
# The example notebook, executed in place with its outputs by a Jupyter kernel of this Python
# (the test extra brings nbconvert and ipykernel).
OMP_NUM_THREADS=1 jupyter nbconvert --to notebook --execute --inplace notebook.ipynb
