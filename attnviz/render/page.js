// attnviz's view of attention maps: draws the maps embedded in its element. Plain JavaScript,
// no library, nothing fetched. Layout of a kind's weights: [layer, head, query, key], one byte
// each, the byte being round(weight / row max * steps); rowMax holds each row's maximum, float32.
//
// This file is the body of a function of `root`, the view's element: render/page.py wraps it
// and calls it once per view, so that any number of views share a page (a notebook's
// outputs). A view reads only the elements inside its root, keeps what it knows in `view`
// below, and sets no global: its API, for tests and benchmarks, is `root.attnviz`.
//
// Over 450 lines, and one file on purpose: every view inlines it whole (no module loader, no
// build step, nothing fetched), so splitting it would only add the files that page.py joins.
// It reads in sections: decoding the data, the panel shown, the heatmap, the head view, menus.
  "use strict";
  if (root.attnviz) return; // this view's script already ran (a front end ran it twice)
  const data = JSON.parse(root.querySelector(".av-data").textContent);
  const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
  const TITLE_FONT = "bold 13px system-ui, -apple-system, 'Segoe UI', sans-serif";
  const MAP_SIDE = 720; // CSS pixels: the heatmap's longer side never exceeds this
  const LARGEST_CELL = 36;
  const ANNOTATED_CELL = 24; // cells at least this large show their weight, as the images do
  const LABEL_ROOM = 14; // a label needs this many pixels; closer ones are thinned
  const HEADS_HEIGHT = 1600; // the head view's columns never get taller than this
  // The head view draws at most this many lines: past it, each query's strongest keys only.
  // Every line is a few hundred pixels of anti-aliased stroke; 262,144 of them (512 tokens)
  // keep a software-rendered browser busy for minutes.
  const LINE_BUDGET = 4096;
  const LINE_COLOR = "31,119,180";
  const FOCUS_COLOR = "217,95,2";
  const BUCKETS = 32; // the head view draws its lines in this many opacities
  const colors = hexBytes(data.colors); // 256 colours, r g b
  const kinds = data.kinds;

  // Everything this view shows and remembers, in one object: what its menus chose (state),
  // where the last drawing put things (the layouts), the weights being shown, the cell or
  // token under the mouse, and how long its work took. An option or a view adds its field here.
  const view = {
    state: { kind: null, layer: 0, head: "mean", scale: "panel", view: "heatmap" },
    heatLayout: null,
    headsLayout: null,
    atlasLayout: null, // where each grid of the atlas went (attnviz heads -o heads.html)
    panel: { key: null, value: null },
    hovered: null,
    // Milliseconds: the script's own work (draws, hovers...), and until the browser has
    // painted its result (...Painted: the next frame, then a task after it).
    timings: { decode: null, firstDraw: null, firstPainted: null, draws: [], drawsPainted: [],
               hovers: [], hoversPainted: [], headDraws: [], headDrawsPainted: [],
               headHovers: [], headHoversPainted: [] },
  };
  const state = view.state;

  // The sub-views a view switches between (its buttons' data-view), each drawn by its
  // function on its canvas, with a hover canvas above it.
  const SUBVIEWS = { atlas: { draw: drawAtlas, canvas: "atlas" },
                     heatmap: { draw: drawHeatmap, canvas: "heatmap" },
                     heads: { draw: drawHeads, canvas: "heads" } };

  // The view's own element of class av-NAME: never one of another view.
  const part = (name) => root.querySelector(`.av-${name}`);

  const api = { ready: false, error: null, timings: view.timings, state, cellCenter,
                tokenCenter, layout: () => view.heatLayout, title, atlasCenter };
  root.attnviz = api;

  function measured(name, started) {
    view.timings[name].push(performance.now() - started);
    requestAnimationFrame(() => setTimeout(() => {
      view.timings[`${name}Painted`].push(performance.now() - started);
    }, 0));
  }

  function hexBytes(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function base64Bytes(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function decode() {
    const started = performance.now();
    await Promise.all(kinds.map(async (kind) => {
      kind.levelBytes = await inflate(base64Bytes(kind.levels));
      kind.rowMaxima = new Float32Array(base64Bytes(kind.rowMax).buffer);
      if (kind.scores) kind.scoreValues = new Float32Array(base64Bytes(kind.scores).buffer);
      delete kind.levels;
    }));
    view.timings.decode = performance.now() - started;
  }

  function currentKind() { return kinds.find((k) => k.cli === state.kind); }

  // The weights of one layer and head (or the mean over heads). Shape: values [Q * K].
  function panel() {
    const kind = currentKind();
    const key = `${kind.name}/${state.layer}/${state.head}`;
    if (view.panel.key === key) return view.panel.value;
    const q = kind.queries, k = kind.keys;
    const heads = state.head === "mean" ? [...Array(kind.heads).keys()] : [Number(state.head)];
    const values = new Float32Array(q * k);
    for (const h of heads) {
      const start = (state.layer * kind.heads + h) * q * k;
      const rows = (state.layer * kind.heads + h) * q;
      for (let r = 0; r < q; r++) {
        const step = kind.rowMaxima[rows + r] / data.steps / heads.length;
        const offset = r * k;
        for (let c = 0; c < k; c++) values[offset + c] += kind.levelBytes[start + offset + c] * step;
      }
    }
    const masked = kind.masked[state.layer];
    const rowMax = new Float32Array(q);
    let max = 0;
    for (let r = 0; r < q; r++) {
      let m = 0;
      const last = masked ? Math.min(r + 1, k) : k; // a masked row sees keys 0..r
      for (let c = 0; c < last; c++) m = Math.max(m, values[r * k + c]);
      rowMax[r] = m;
      max = Math.max(max, m);
    }
    const result = { kind, q, k, values, rowMax, max, masked };
    view.panel = { key, value: result };
    return result;
  }

  // The weight drawn brightest in row r, on the chosen scale (at least 1e-6, as the images).
  function scaleOf(p, r) {
    const s = { panel: p.max, shared: p.kind.sharedMax, unit: 1, row: p.rowMax[r],
                log: p.max }[state.scale];
    return Math.max(s, 1e-6);
  }

  // A weight's place on the colour scale, 0 to 1: its share of the scale's largest, or on
  // the log scale, its decades below the map's largest (LOG_DECADES of them, as the images).
  const LOG_DECADES = 4;
  function share(p, r, weight) {
    if (state.scale !== "log") return weight / scaleOf(p, r);
    return weight > 0 ? 1 + Math.log10(weight / scaleOf(p, r)) / LOG_DECADES : 0;
  }

  function visible(p, r, c) { return !p.masked || c <= r; }

  function colorIndex(share) {
    return Math.min(255, Math.floor(Math.min(1, Math.max(0, share)) * 256));
  }

  // Which labels (as the images draw them, already cut) an axis of n items, each `room`
  // pixels wide, shows: every one, or every step-th with its index, as the images do for
  // long sequences.
  function thinned(labels, room) {
    const step = room >= LABEL_ROOM ? 1 : Math.ceil(LABEL_ROOM / room);
    const shown = [];
    for (let i = 0; i < labels.length; i += step) {
      shown.push([i, step === 1 ? labels[i] : `${labels[i]} (${i})`]);
    }
    return shown;
  }

  function sized(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.ceil(width * ratio);
    canvas.height = Math.ceil(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  function widest(ctx, labels) {
    return labels.reduce((m, [, text]) => Math.max(m, ctx.measureText(text).width), 0);
  }

  // What the menus call a layer and a head: their index in the maps, or (an explanation's
  // one layer and head) the model's numbers for them.
  // The model's numbers of a layer and a head: a page may hold some layers and heads only
  // (layerNumbers, headNumbers), an explanation one of each (layerNames, headNames).
  function layerName(kind, layer) {
    const names = kind.layerNames || kind.layerNumbers;
    return names ? names[layer] : layer;
  }
  function headName(kind, head) {
    const names = kind.headNames || kind.headNumbers;
    return names ? names[head] : head;
  }

  function title() {
    const kind = currentKind();
    const head = state.head === "mean" ? kind.meanName : `head ${headName(kind, state.head)}`;
    return `${kind.title} · layer ${layerName(kind, state.layer)} · ${head} · scale ${state.scale}`;
  }

  function drawHeatmap() {
    const started = performance.now();
    const p = panel();
    const kind = p.kind;
    const canvas = part("heatmap");
    const measure = canvas.getContext("2d");
    measure.font = FONT;
    const cell = Math.min(LARGEST_CELL, MAP_SIDE / Math.max(p.q, p.k, 1));
    const rows = thinned(kind.queryDrawn, cell);
    const cols = thinned(kind.keyDrawn, cell);
    const left = 22 + 8 + widest(measure, rows);
    const top = 34;
    const below = 8 + widest(measure, cols) * Math.SQRT1_2 + 10 + 22;
    const mapW = p.k * cell, mapH = p.q * cell;
    measure.font = TITLE_FONT;
    const width = Math.max(left + mapW + 110, measure.measureText(title()).width + 20);
    const height = top + mapH + below;
    const ctx = sized(canvas, width, height);
    sized(part("heatmap-hover"), width, height);
    view.heatLayout = { left, top, cell, width, height, rows, cols };
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#222";
    ctx.font = TITLE_FONT;
    ctx.textBaseline = "middle";
    ctx.fillText(title(), 10, 16);
    if (p.q && p.k) {
      drawCells(ctx, p, left, top, cell);
      if (p.masked) hatch(ctx, p, left, top, cell);
      if (cell >= ANNOTATED_CELL) annotate(ctx, p, left, top, cell);
    }
    ctx.font = FONT;
    ctx.fillStyle = "#222";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const [i, text] of rows) ctx.fillText(text, left - 6, top + (i + 0.5) * cell);
    for (const [i, text] of cols) {
      ctx.save();
      ctx.translate(left + (i + 0.5) * cell, top + mapH + 6);
      ctx.rotate(-Math.PI / 4);
      ctx.fillText(text, 0, 0);
      ctx.restore();
    }
    ctx.textAlign = "center";
    ctx.fillStyle = "#444";
    ctx.fillText(kind.keyAxis, left + mapW / 2, height - 10);
    ctx.save();
    ctx.translate(10, top + mapH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(kind.queryAxis, 0, 0);
    ctx.restore();
    colorBar(ctx, p, left + mapW + 16, top, Math.max(mapH, 120));
    measured("draws", started);
  }

  // One pixel per cell in an offscreen canvas, scaled up without smoothing.
  function drawCells(ctx, p, left, top, cell) {
    const image = new ImageData(p.k, p.q);
    const pixels = image.data;
    for (let r = 0; r < p.q; r++) {
      for (let c = 0; c < p.k; c++) {
        const at = 4 * (r * p.k + c);
        if (visible(p, r, c)) {
          const color = 3 * colorIndex(share(p, r, p.values[r * p.k + c]));
          pixels[at] = colors[color];
          pixels[at + 1] = colors[color + 1];
          pixels[at + 2] = colors[color + 2];
        } else {
          pixels[at] = pixels[at + 1] = pixels[at + 2] = 0xd0; // masked: grey, hatched below
        }
        pixels[at + 3] = 255;
      }
    }
    const offscreen = document.createElement("canvas");
    offscreen.width = p.k;
    offscreen.height = p.q;
    offscreen.getContext("2d").putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(offscreen, left, top, p.k * cell, p.q * cell);
  }

  // Each visible weight written in its cell, dark on light colours and light on dark ones;
  // weights that round to .00 are left blank, as in the images.
  function annotate(ctx, p, left, top, cell) {
    ctx.font = FONT;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let r = 0; r < p.q; r++) {
      for (let c = 0; c < p.k; c++) {
        const weight = p.values[r * p.k + c];
        if (!visible(p, r, c) || weight < 0.005) continue;
        const at = 3 * colorIndex(share(p, r, weight));
        const light = 0.299 * colors[at] + 0.587 * colors[at + 1] + 0.114 * colors[at + 2] > 127;
        ctx.fillStyle = light ? "#000" : "#fff";
        ctx.fillText(weight.toFixed(2).replace(/^0/, ""), left + (c + 0.5) * cell,
                     top + (r + 0.5) * cell);
      }
    }
  }

  // Masked cells (the future of masked self-attention) hatched over their grey, as the
  // images draw them: clearly not a colour of the map.
  function hatch(ctx, p, left, top, cell) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const t = tile.getContext("2d");
    t.fillStyle = "#d0d0d0";
    t.fillRect(0, 0, 8, 8);
    t.strokeStyle = "#a0a0a0";
    t.beginPath();
    t.moveTo(0, 8);
    t.lineTo(8, 0);
    t.moveTo(-2, 2);
    t.lineTo(2, -2);
    t.moveTo(6, 10);
    t.lineTo(10, 6);
    t.stroke();
    ctx.fillStyle = ctx.createPattern(tile, "repeat");
    ctx.beginPath();
    for (let r = 0; r < p.q; r++) {
      const first = r + 1;
      if (first < p.k) ctx.rect(left + first * cell, top + r * cell, (p.k - first) * cell, cell);
    }
    ctx.fill();
  }

  function colorBar(ctx, p, x, top, height) {
    for (let i = 0; i < 256; i++) {
      ctx.fillStyle = `rgb(${colors[3 * i]},${colors[3 * i + 1]},${colors[3 * i + 2]})`;
      const y = top + height - ((i + 1) / 256) * height;
      ctx.fillRect(x, y, 14, height / 256 + 0.5);
    }
    ctx.fillStyle = "#222";
    ctx.font = FONT;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const most = state.scale === "row" ? null : scaleOf(p, 0);
    ctx.fillText(most === null ? "row max" : most.toFixed(3), x + 18, top + 4);
    if (state.scale === "log") {
      ctx.fillText((most / 100).toExponential(0), x + 18, top + height / 2);
      ctx.fillText((most / 10 ** LOG_DECADES).toExponential(0), x + 18, top + height - 4);
    } else {
      if (most !== null) ctx.fillText((most / 2).toFixed(3), x + 18, top + height / 2);
      ctx.fillText("0", x + 18, top + height - 4);
    }
    ctx.save();
    ctx.translate(x + 72, top + height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("attention weight", 0, 0);
    ctx.restore();
  }

  function cellAt(x, y) {
    const p = panel();
    const { left, top, cell } = view.heatLayout;
    const c = Math.floor((x - left) / cell), r = Math.floor((y - top) / cell);
    return r >= 0 && r < p.q && c >= 0 && c < p.k ? [r, c] : null;
  }

  // The centre of cell (r, c) in CSS pixels from the heatmap canvas's top-left corner.
  function cellCenter(r, c) {
    const { left, top, cell } = view.heatLayout;
    return { x: left + (c + 0.5) * cell, y: top + (r + 0.5) * cell };
  }

  function hoverHeatmap(event) {
    const started = performance.now();
    const at = cellAt(event.offsetX, event.offsetY);
    const key = at && at.join(",");
    if (key !== view.hovered) {
      view.hovered = key;
      const ctx = part("heatmap-hover").getContext("2d");
      ctx.clearRect(0, 0, view.heatLayout.width, view.heatLayout.height);
      if (at) {
        const { left, top, cell } = view.heatLayout;
        const [r, c] = at;
        const p = panel();
        ctx.strokeStyle = "rgba(255,255,255,0.55)";
        ctx.lineWidth = 1;
        ctx.strokeRect(left, top + r * cell, p.k * cell, cell);
        ctx.strokeRect(left + c * cell, top, cell, p.q * cell);
        ctx.strokeStyle = "#e8112d";
        ctx.lineWidth = 2;
        ctx.strokeRect(left + c * cell - 1, top + r * cell - 1, cell + 2, cell + 2);
        showCell(p, r, c);
      }
    }
    if (at) placeTooltip(event); else part("tooltip").hidden = true;
    measured("hovers", started);
  }

  // The cell's labels, whole, as the images label its row and column (a decoder row reads
  // "input → next", as the axis title says), with their positions; and, for an explanation,
  // the score the softmax took, Q Kᵀ / √d_k before the mask.
  function showCell(p, r, c) {
    const kind = p.kind;
    part("tip-query").textContent = `${kind.queryLabels[r]} (${r})`;
    part("tip-key").textContent = `${kind.keyLabels[c]} (${c})`;
    part("tip-weight").textContent = visible(p, r, c) ? p.values[r * p.k + c].toFixed(3)
      : "masked: a future position, weight 0";
    const scores = kind.scoreValues && state.head !== "mean";
    part("tip-score-row").hidden = !scores;
    if (scores) {
      const at = ((state.layer * kind.heads + Number(state.head)) * p.q + r) * p.k + c;
      part("tip-score").textContent = kind.scoreValues[at].toFixed(3)
        + (visible(p, r, c) ? "" : ", then M = −∞");
    }
  }

  // The tooltip beside the mouse, inside the view (not fixed to the window: a notebook's
  // output may sit in a transformed or scrolled container).
  function placeTooltip(event) {
    const tip = part("tooltip");
    tip.hidden = false;
    const box = root.getBoundingClientRect();
    const x = Math.min(event.clientX - box.left + 16, root.clientWidth - tip.offsetWidth - 8);
    tip.style.left = `${Math.max(0, x)}px`;
    tip.style.top = `${Math.max(0, event.clientY - box.top + 16)}px`;
  }

  // The keys of row r drawn in the head view: all of them, or the `most` strongest.
  // Shape: a list of key indices.
  function strongest(p, r, most) {
    const row = p.values.subarray(r * p.k, (r + 1) * p.k);
    if (most >= p.k) return [...row.keys()];
    const least = Float32Array.from(row).sort()[p.k - most]; // the most-th largest weight
    const kept = [];
    for (let c = 0; c < p.k && kept.length < most; c++) if (row[c] >= least) kept.push(c);
    return kept;
  }

  // Lines grouped by opacity, one path per group, stroked in `color`: one stroke per group
  // instead of one per line. `lines` holds [row, column, share of the scale].
  function strokeLines(ctx, lines, color, floor) {
    const { fromX, toX, top, rowH } = view.headsLayout;
    const groups = Array.from({ length: BUCKETS }, () => []);
    for (const line of lines) {
      if (line[2] < 0.5 / BUCKETS) continue;
      groups[Math.min(BUCKETS - 1, Math.max(0, Math.round(line[2] * BUCKETS) - 1))].push(line);
    }
    // One stroke per line: a software rasteriser fills one path of thousands of crossing
    // lines far more slowly than thousands of single lines.
    groups.forEach((group, i) => {
      ctx.strokeStyle = `rgba(${color},${Math.max(floor, (i + 1) / BUCKETS)})`;
      for (const [r, c] of group) {
        ctx.beginPath();
        ctx.moveTo(fromX, top + (r + 0.5) * rowH);
        ctx.lineTo(toX, top + (c + 0.5) * rowH);
        ctx.stroke();
      }
    });
  }

  // The head view, as bertviz draws it: queries on the left, keys on the right, one line
  // per pair whose opacity is the weight on the chosen scale.
  function drawHeads() {
    const started = performance.now();
    const p = panel();
    const kind = p.kind;
    const canvas = part("heads");
    const measure = canvas.getContext("2d");
    measure.font = FONT;
    const rowH = Math.max(3, Math.min(18, HEADS_HEIGHT / Math.max(p.q, p.k, 1)));
    const rows = thinned(kind.queryDrawn, rowH);
    const cols = thinned(kind.keyDrawn, rowH);
    const queryX = 12 + widest(measure, rows);
    const fromX = queryX + 8, toX = fromX + 280;
    const keyX = toX + 8;
    const top = 44;
    const keysWidth = widest(measure, cols);
    measure.font = TITLE_FONT;
    const width = Math.max(keyX + keysWidth + 12, measure.measureText(title()).width + 20);
    const height = top + Math.max(p.q, p.k) * rowH + 12;
    const ctx = sized(canvas, width, height);
    sized(part("heads-hover"), width, height);
    view.headsLayout = { queryX, fromX, toX, keyX, top, rowH, width, height };
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#222";
    ctx.font = TITLE_FONT;
    ctx.textBaseline = "middle";
    ctx.fillText(title(), 10, 14);
    ctx.font = FONT;
    ctx.fillStyle = "#666";
    ctx.textAlign = "right";
    ctx.fillText("query", queryX, 34);
    ctx.textAlign = "left";
    ctx.fillText("key", keyX, 34);
    const most = Math.max(1, Math.floor(LINE_BUDGET / Math.max(p.q, 1)));
    const lines = [];
    for (let r = 0; r < p.q; r++) {
      for (const c of strongest(p, r, most)) {
        if (visible(p, r, c)) lines.push([r, c, Math.min(1, share(p, r, p.values[r * p.k + c]))]);
      }
    }
    ctx.lineWidth = 1.5;
    strokeLines(ctx, lines, LINE_COLOR, 0);
    part("heads-limit").textContent = most < p.k
      ? `With ${p.k} keys, each query's ${most} strongest are drawn; hover a token for all of its lines.`
      : "";
    ctx.fillStyle = "#222";
    ctx.textAlign = "right";
    for (const [i, text] of rows) ctx.fillText(text, queryX, top + (i + 0.5) * rowH);
    ctx.textAlign = "left";
    for (const [i, text] of cols) ctx.fillText(text, keyX, top + (i + 0.5) * rowH);
    measured("headDraws", started);
  }

  // The token under (x, y) in the head view: ["query" | "key", index], or null.
  function tokenAt(x, y) {
    const p = panel();
    const { fromX, toX, top, rowH } = view.headsLayout;
    const i = Math.floor((y - top) / rowH);
    const side = x < (fromX + toX) / 2 ? "query" : "key";
    return i >= 0 && i < (side === "query" ? p.q : p.k) ? [side, i] : null;
  }

  // The centre of a token's label in the head view, in CSS pixels from the canvas's corner.
  function tokenCenter(side, i) {
    const { queryX, keyX, top, rowH } = view.headsLayout;
    return { x: side === "query" ? queryX - 10 : keyX + 10, y: top + (i + 0.5) * rowH };
  }

  function hoverHeads(event) {
    const started = performance.now();
    const at = tokenAt(event.offsetX, event.offsetY);
    const key = at && at.join(",");
    if (key !== view.hovered) {
      view.hovered = key;
      const ctx = part("heads-hover").getContext("2d");
      const { fromX, toX, top, rowH, width, height } = view.headsLayout;
      ctx.clearRect(0, 0, width, height);
      part("heads").style.opacity = at ? "0.25" : "1"; // the other lines fade (the compositor's job)
      if (at) {
        const p = panel();
        const [side, i] = at;
        let best = -1, bestWeight = -1;
        const count = side === "query" ? p.k : p.q;
        const lines = [];
        for (let j = 0; j < count; j++) {
          const [r, c] = side === "query" ? [i, j] : [j, i];
          if (!visible(p, r, c)) continue;
          const weight = p.values[r * p.k + c];
          if (weight > bestWeight) { best = j; bestWeight = weight; }
          lines.push([r, c, Math.min(1, share(p, r, weight))]);
        }
        ctx.lineWidth = 2;
        strokeLines(ctx, lines, FOCUS_COLOR, 0.15);
        ctx.fillStyle = `rgba(${FOCUS_COLOR},0.25)`;
        ctx.fillRect(side === "query" ? 0 : toX, top + i * rowH, fromX, rowH);
        if (best >= 0) {
          const [r, c] = side === "query" ? [i, best] : [best, i];
          showCell(p, r, c); // the token and its strongest partner
        }
      }
    }
    if (at) placeTooltip(event); else part("tooltip").hidden = true;
    measured("headHovers", started);
  }

  // --- The atlas of the heads (attnviz heads -o heads.html): per kind, a layers x heads
  // grid of the labels and of each figure, each figure on its own scale (0 to its largest
  // value); hovering a head says its figures, clicking it opens its map.
  const atlas = data.atlas || null;
  const NOT_MEASURED = "#cccccc";

  function atlasColor(kind, name, i) {
    if (name === "label") {
      const found = atlas.labels.find((label) => label.name === kind.labels[i]);
      return found ? found.color : atlas.noLabel;
    }
    const value = kind.values[name][i];
    if (value === null) return NOT_MEASURED;
    const at = 3 * colorIndex(value / Math.max(atlas.limits[name], 1e-6));
    return `rgb(${colors[at]},${colors[at + 1]},${colors[at + 2]})`;
  }

  function drawAtlas() {
    const canvas = part("atlas");
    const columns = ["label", ...atlas.names];
    const layers = Math.max(1, ...atlas.kinds.map((k) => k.layers));
    const heads = Math.max(1, ...atlas.kinds.map((k) => k.heads));
    const cell = Math.max(4, Math.min(18, 300 / layers, 120 / heads));
    const measure = canvas.getContext("2d");
    measure.font = FONT;
    const gridTitle = (name) => (name === "label" ? name
      : `${name} 0-${atlas.limits[name].toFixed(2)}`);
    const legend = [...atlas.labels, { rule: "no label", color: atlas.noLabel }];
    const legendW = legend.reduce((w, label) => w + 22 + measure.measureText(label.rule).width, 6);
    const left = 34, gap = 18;
    const titles = columns.map((name) => measure.measureText(gridTitle(name)).width);
    const columnW = gap + Math.max(heads * cell, ...titles);
    const grids = [], headings = [];
    let y = 6;
    for (const kind of atlas.kinds) {
      headings.push([kind.title, y + 10]);
      y += 40;
      columns.forEach((name, c) => grids.push({ kind, name, x: left + c * columnW, y, cell }));
      y += kind.layers * cell + 18;
    }
    const legendY = y + 8;
    const width = Math.max(left + columns.length * columnW, legendW);
    const height = legendY + 20;
    const ctx = sized(canvas, width, height);
    sized(part("atlas-hover"), width, height);
    view.atlasLayout = { grids, width, height };
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.textBaseline = "middle";
    ctx.font = TITLE_FONT;
    ctx.fillStyle = "#222";
    for (const [text, at] of headings) ctx.fillText(text, 6, at);
    ctx.font = FONT;
    for (const grid of grids) {
      const { kind, name, x, y: top } = grid;
      ctx.fillStyle = "#222";
      ctx.textAlign = "left";
      ctx.fillText(gridTitle(name), x, top - 8);
      for (let l = 0; l < kind.layers; l++) {
        for (let h = 0; h < kind.heads; h++) {
          ctx.fillStyle = atlasColor(kind, name, l * kind.heads + h);
          ctx.fillRect(x + h * cell, top + l * cell, cell, cell);
        }
      }
      if (name === "label") {
        ctx.fillStyle = "#666";
        ctx.textAlign = "right";
        const step = Math.ceil(12 / cell);
        for (let l = 0; l < kind.layers; l += step) {
          ctx.fillText(`L${l}`, x - 4, top + (l + 0.5) * cell);
        }
      }
    }
    let x = 6;
    ctx.textAlign = "left";
    for (const label of legend) {
      ctx.fillStyle = label.color;
      ctx.fillRect(x, legendY - 5, 10, 10);
      ctx.fillStyle = "#222";
      ctx.fillText(label.rule, x + 14, legendY);
      x += 22 + ctx.measureText(label.rule).width;
    }
  }

  // The head under (x, y) in the atlas: [grid, layer, head], or null.
  function atlasAt(x, y) {
    for (const grid of view.atlasLayout.grids) {
      const h = Math.floor((x - grid.x) / grid.cell), l = Math.floor((y - grid.y) / grid.cell);
      if (h >= 0 && h < grid.kind.heads && l >= 0 && l < grid.kind.layers) return [grid, l, h];
    }
    return null;
  }

  // The centre of a head's cell in the grid of figure `name` (or "label") of a kind.
  function atlasCenter(kindName, name, l, h) {
    const grid = view.atlasLayout.grids.find((g) => g.kind.name === kindName && g.name === name);
    return { x: grid.x + (h + 0.5) * grid.cell, y: grid.y + (l + 0.5) * grid.cell };
  }

  function hoverAtlas(event) {
    const at = atlasAt(event.offsetX, event.offsetY);
    const ctx = part("atlas-hover").getContext("2d");
    ctx.clearRect(0, 0, view.atlasLayout.width, view.atlasLayout.height);
    if (!at) { part("atlas-head").textContent = ""; return; }
    const [grid, l, h] = at;
    ctx.strokeStyle = "#e8112d";
    ctx.lineWidth = 2;
    ctx.strokeRect(grid.x + h * grid.cell - 1, grid.y + l * grid.cell - 1, grid.cell + 2,
                   grid.cell + 2);
    const i = l * grid.kind.heads + h;
    const figures = atlas.names.map((name) => {
      const value = grid.kind.values[name][i];
      return `${name} ${value === null ? "-" : value.toFixed(3)}`;
    });
    part("atlas-head").textContent = `${grid.kind.title} · layer ${l} · head ${h}: label ` +
      `${grid.kind.labels[i] || "none"} · ${figures.join(" · ")} (click to open its map)`;
  }

  function openHead(event) {
    const at = atlasAt(event.offsetX, event.offsetY);
    if (!at) return;
    const [grid, l, h] = at;
    state.kind = grid.kind.cli;
    part("kind").value = state.kind;
    state.layer = l;
    state.head = h;
    fillLayerAndHead();
    state.view = "heatmap";
    redraw();
  }

  function fillSelect(select, values, labels, chosen) {
    select.replaceChildren(...values.map((value, i) => {
      const option = document.createElement("option");
      option.value = String(value);
      option.textContent = labels[i];
      return option;
    }));
    select.value = String(chosen);
  }

  // The layer and head menus of the kind shown. An explanation's kind has no mean over
  // heads (kind.mean is false): it is one head.
  function fillLayerAndHead() {
    const kind = currentKind();
    const mean = kind.mean !== false;
    if (!(state.layer >= 0 && state.layer < kind.layers)) state.layer = kind.defaultLayer;
    if (state.head !== "mean" && !(Number(state.head) < kind.heads)) state.head = "mean";
    if (state.head === "mean" && !mean) state.head = 0;
    const layers = [...Array(kind.layers).keys()];
    fillSelect(part("layer"), layers, layers.map((l) => String(layerName(kind, l))), state.layer);
    const heads = [...(mean ? ["mean"] : []), ...Array(kind.heads).keys()];
    fillSelect(part("head"), heads,
               heads.map((h) => (h === "mean" ? kind.meanName : String(headName(kind, h)))),
               state.head);
  }

  // Forget the hover: no tooltip, no highlight, every line at full opacity.
  function unhover() {
    view.hovered = null;
    part("tooltip").hidden = true;
    part("heads").style.opacity = "1";
    for (const sub of Object.values(SUBVIEWS)) {
      const canvas = part(`${sub.canvas}-hover`);
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    }
  }

  function redraw() {
    unhover();
    for (const [name, sub] of Object.entries(SUBVIEWS)) {
      part(`${name}-view`).hidden = state.view !== name;
      root.querySelector(`.av-show[data-view="${name}"]`)
        .setAttribute("aria-pressed", String(state.view === name));
      if (state.view === name) sub.draw();
    }
  }

  function listen() {
    part("kind").addEventListener("change", (e) => {
      state.kind = e.target.value;
      fillLayerAndHead();
      redraw();
    });
    part("layer").addEventListener("change", (e) => {
      state.layer = Number(e.target.value);
      redraw();
    });
    part("head").addEventListener("change", (e) => {
      state.head = e.target.value === "mean" ? "mean" : Number(e.target.value);
      redraw();
    });
    part("scale").addEventListener("change", (e) => { state.scale = e.target.value; redraw(); });
    for (const button of root.querySelectorAll(".av-show")) {
      button.addEventListener("click", () => { state.view = button.dataset.view; redraw(); });
    }
    part("heatmap-hover").addEventListener("mousemove", hoverHeatmap);
    part("heads-hover").addEventListener("mousemove", hoverHeads);
    if (atlas) {
      root.querySelector('.av-show[data-view="atlas"]').hidden = false;
      part("atlas-hover").addEventListener("mousemove", hoverAtlas);
      part("atlas-hover").addEventListener("click", openHead);
    }
    for (const sub of Object.values(SUBVIEWS)) {
      part(`${sub.canvas}-hover`).addEventListener("mouseleave", unhover);
    }
  }

  async function start() {
    try {
      await decode();
      const initial = data.initial;
      state.kind = kinds.find((k) => k.name === initial.kind).cli;
      state.layer = initial.layer;
      state.head = initial.head;
      state.scale = initial.scale;
      state.view = atlas && initial.view === "atlas" ? "atlas" : "heatmap";
      fillSelect(part("kind"), kinds.map((k) => k.cli),
                 kinds.map((k) => `${k.cli}: ${k.title.toLowerCase()}`), state.kind);
      fillSelect(part("scale"), data.scales, data.scales, state.scale);
      fillLayerAndHead();
      listen();
      redraw();
      part("status").hidden = true;
      view.timings.firstDraw = performance.now();
      requestAnimationFrame(() => setTimeout(() => {
        view.timings.firstPainted = performance.now();
      }, 0));
      api.ready = true;
    } catch (error) {
      api.error = String(error);
      part("status").textContent = `This view could not draw the maps: ${error}`;
      part("status").classList.add("av-error");
      console.error(error);
    }
  }

  start();
