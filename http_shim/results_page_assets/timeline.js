// The timeline: one lane per speaker on a shared time axis, drawn on a canvas, with lanes for
// overlapped speech and for speech regions, a playback cursor and an overview of the whole
// file. Only what is in view is drawn: each lane's turns are sorted by start with a running
// maximum of their ends, so the first turn in view is a binary search away and drawing stops
// at the first turn past the view; a four-hour result (12,500 turns) draws in milliseconds.
// Self-contained (no imports): the HTML export inlines this file as it is.

const GUTTER = 168; // lane labels
const AXIS = 26;
const LANE = 30;
const GAP = 4;
const ROW = 16; // overlap and speech rows
const OVERVIEW = 30;
const LOW_CONFIDENCE = 0.5; // result.js LOW_CONFIDENCE
const MAX_PX_PER_SECOND = 800;
const TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#2f4b7c", "#8cd17d", "#d37295"];

export function speakerColor(index) {
  return PALETTE[index % PALETTE.length];
}

/** Sorted spans of one row, searchable by time: `reach[i]` is the latest end among the first i+1. */
class Row {
  constructor(spans, indices = null) {
    const n = spans.length;
    this.spans = spans;
    this.indices = indices || Int32Array.from({ length: n }, (_, i) => i);
    this.starts = new Float64Array(n);
    this.ends = new Float64Array(n);
    this.reach = new Float64Array(n);
    let latest = -Infinity;
    for (let i = 0; i < n; i++) {
      this.starts[i] = spans[i].start;
      this.ends[i] = spans[i].end;
      latest = Math.max(latest, spans[i].end);
      this.reach[i] = latest;
    }
  }

  /** The first position whose span could reach past `time`. */
  firstReaching(time) {
    let lo = 0;
    let hi = this.reach.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.reach[mid] > time) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Calls `visit(position)` for every span overlapping [from, to]. */
  each(from, to, visit) {
    for (let i = this.firstReaching(from); i < this.starts.length && this.starts[i] <= to; i++) {
      if (this.ends[i] >= from) visit(i);
    }
  }
}

export class Timeline {
  /** `onSeek({time, turn})`: a click on a turn (`turn` its index in `model.turns`) or on the axis. */
  constructor(canvas, { onSeek = () => {}, onHover = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onSeek = onSeek;
    this.onHover = onHover;
    this.model = null;
    this.start = 0;
    this.pps = 1; // CSS pixels per second
    this.time = null;
    this.selected = null;
    this.width = 0;
    this.height = 0;
    this.drawn = new Int32Array(0);
    this.drawnCount = 0;
    this.stats = { draws: 0, lastMs: 0, maxMs: 0, totalMs: 0 };
    this.pending = false;
    this.layer = null; // the turns of the view last drawn, and the key of that view
    this.layerKey = "";
    this.overview = null;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.listen();
  }

  /** Show `model`: {turns (sorted by start), speakers: [{label, identified}], speech, speechDerived, overlaps, duration}. */
  setModel(model) {
    this.model = model;
    const lane = new Map(model.speakers.map((s, i) => [s.label, i]));
    const perLane = model.speakers.map(() => []);
    model.turns.forEach((turn, i) => perLane[lane.get(turn.speaker)].push(i));
    this.lanes = perLane.map((indices) => new Row(indices.map((i) => model.turns[i]), Int32Array.from(indices)));
    this.laneOf = model.turns.map((turn) => lane.get(turn.speaker));
    this.speechRow = new Row(model.speech);
    this.overlapRow = new Row(model.overlaps);
    this.drawn = new Int32Array(model.turns.length);
    this.selected = null;
    this.time = null;
    this.layerKey = "";
    this.canvas.style.height = `${this.layoutHeight()}px`;
    this.overview = null;
    this.resize();
    this.fit();
  }

  get duration() {
    return this.model ? Math.max(this.model.duration, 0.001) : 1;
  }

  /** The audio turned out longer than the result says (its last turn ends before the file does). */
  set duration(seconds) {
    if (this.model && seconds > this.model.duration) {
      const whole = this.pps <= this.minPps * 1.0001;
      this.model.duration = seconds;
      this.overview = null;
      if (whole) this.fit();
      this.clamp();
      this.invalidate();
    }
  }

  layoutHeight() {
    const lanes = this.model ? this.model.speakers.length : 0;
    return AXIS + lanes * (LANE + GAP) + 2 * (ROW + GAP) + GAP + OVERVIEW;
  }

  laneTop(lane) {
    return AXIS + lane * (LANE + GAP);
  }

  get plotWidth() {
    return Math.max(this.width - GUTTER - 8, 10);
  }

  // --- the view ----------------------------------------------------------------------

  fit() {
    this.pps = this.plotWidth / this.duration;
    this.start = 0;
    this.invalidate();
  }

  get minPps() {
    return this.plotWidth / this.duration;
  }

  /** Zoom by `factor`, keeping `time` (default: the middle of the view) where it is on screen. */
  zoom(factor, time = this.start + this.plotWidth / this.pps / 2) {
    const x = (time - this.start) * this.pps;
    this.pps = Math.min(Math.max(this.pps * factor, this.minPps), MAX_PX_PER_SECOND);
    this.start = time - x / this.pps;
    this.clamp();
    this.invalidate();
  }

  panBy(seconds) {
    this.start += seconds;
    this.clamp();
    this.invalidate();
  }

  /** Bring `time` into view, paging the way playback goes. */
  reveal(time) {
    const span = this.plotWidth / this.pps;
    if (time < this.start || time > this.start + span) {
      this.start = time - span * 0.1;
      this.clamp();
      this.invalidate();
    }
  }

  clamp() {
    const span = this.plotWidth / this.pps;
    this.start = Math.min(Math.max(this.start, 0), Math.max(this.duration - span, 0));
  }

  /** The view: its first and last second, its scale, and where the plot starts on the canvas (CSS pixels). */
  viewRange() {
    return { start: this.start, end: this.start + this.plotWidth / this.pps, pxPerSecond: this.pps, left: GUTTER };
  }

  setTime(time) {
    this.time = time;
    this.invalidate();
  }

  select(index) {
    this.selected = index;
    this.invalidate();
  }

  /** Lanes of the speakers whose turns contain `time`. */
  activeAt(time) {
    const active = [];
    if (!this.model || time === null) return active;
    this.lanes.forEach((row, lane) => {
      let hit = false;
      row.each(time, time, () => (hit = true));
      if (hit) active.push(lane);
    });
    return active;
  }

  // --- what is drawn, for the page and its tests ----------------------------------------

  /** Every row: the speaker lanes (`kind` "speaker"), then "overlap" and "speech"; CSS pixels. */
  rows() {
    if (!this.model) return [];
    const lanes = this.model.speakers.map((s, i) => ({ kind: "speaker", label: s.label, identified: s.identified, y: this.laneTop(i), height: LANE }));
    const below = this.laneTop(this.model.speakers.length);
    return [
      ...lanes,
      { kind: "overlap", label: "overlap", y: below, height: ROW },
      { kind: "speech", label: this.model.speechDerived ? "speech (turns)" : "speech", y: below + ROW + GAP, height: ROW },
    ];
  }

  /** The turn blocks of the last frame: index in `model.turns`, speaker, times, and their box (CSS pixels). */
  drawnBlocks() {
    const blocks = [];
    for (let k = 0; k < this.drawnCount; k++) {
      const i = this.drawn[k];
      const turn = this.model.turns[i];
      const box = this.box(i);
      blocks.push({ turn: i, speaker: turn.speaker, start: turn.start, end: turn.end, confidence: turn.confidence, ...box });
    }
    return blocks;
  }

  box(i) {
    const turn = this.model.turns[i];
    const x0 = Math.max(GUTTER + (turn.start - this.start) * this.pps, GUTTER);
    const x1 = Math.min(GUTTER + (turn.end - this.start) * this.pps, GUTTER + this.plotWidth);
    return { x: x0, width: Math.max(x1 - x0, 1), y: this.laneTop(this.laneOf[i]) + 2, height: LANE - 4 };
  }

  /** The turn under a point (CSS pixels), within 3 px; null where there is none. */
  turnAt(x, y) {
    if (!this.model || x < GUTTER) return null;
    const lane = Math.floor((y - AXIS) / (LANE + GAP));
    if (lane < 0 || lane >= this.lanes.length || y - this.laneTop(lane) > LANE) return null;
    const time = this.start + (x - GUTTER) / this.pps;
    const slack = 3 / this.pps;
    const row = this.lanes[lane];
    let best = null;
    let distance = Infinity;
    row.each(time - slack, time + slack, (p) => {
      const d = time < row.starts[p] ? row.starts[p] - time : time > row.ends[p] ? time - row.ends[p] : 0;
      if (d < distance) [best, distance] = [row.indices[p], d];
    });
    return best;
  }

  // --- drawing ---------------------------------------------------------------------------

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    if (rect.width === this.width && rect.height === this.height) return;
    const span = this.plotWidth / this.pps;
    this.width = rect.width;
    this.height = rect.height;
    this.canvas.width = Math.round(rect.width * ratio);
    this.canvas.height = Math.round(rect.height * ratio);
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.overview = null;
    if (this.model) this.pps = Math.max(this.plotWidth / span, this.minPps); // keep the same seconds in view
    this.clamp();
    this.invalidate();
  }

  invalidate() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** One frame: the layer of turns (redrawn only when the view changed), then the cursor, labels and overview. */
  draw() {
    if (!this.model || !this.width) return;
    const began = performance.now();
    const from = this.start;
    const to = this.start + this.plotWidth / this.pps;
    const rows = this.rows();
    // playback moves only the cursor: the turns of an unchanged view are copied, not drawn again
    const key = [from, this.pps, this.canvas.width, this.canvas.height, this.selected, this.model.duration].join();
    if (key !== this.layerKey) {
      this.drawLayer(from, to, rows);
      this.layerKey = key;
    }
    const ctx = this.ctx;
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.drawImage(this.layer, 0, 0, this.width, this.height);
    if (this.time !== null && this.time >= from && this.time <= to) {
      ctx.fillStyle = "#d11";
      ctx.fillRect(GUTTER + (this.time - from) * this.pps - 1, AXIS - 6, 2, rows[rows.length - 1].y + ROW - AXIS + 6);
    }
    this.drawLabels(rows);
    this.drawOverview(from, to);
    const spent = performance.now() - began;
    this.stats.draws += 1;
    this.stats.lastMs = spent;
    this.stats.totalMs += spent;
    this.stats.maxMs = Math.max(this.stats.maxMs, spent);
  }

  /** The axis, the overlap and speech rows and the turns in view, into the cached layer. */
  drawLayer(from, to, rows) {
    if (!this.layer || this.layer.width !== this.canvas.width || this.layer.height !== this.canvas.height) {
      this.layer = document.createElement("canvas");
      this.layer.width = this.canvas.width;
      this.layer.height = this.canvas.height;
    }
    const ratio = this.canvas.width / this.width;
    const ctx = this.layer.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const x = (t) => GUTTER + (t - from) * this.pps;
    const lanesBottom = this.laneTop(this.model.speakers.length) - GAP;
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, 0, this.plotWidth, this.height);
    ctx.clip();
    this.drawAxis(ctx, from, to, x, rows[rows.length - 1].y + ROW);
    // overlapped speech: a shade across every lane, and its own row
    const overlapY = rows[rows.length - 2].y;
    ctx.fillStyle = "rgba(40, 40, 40, 0.08)";
    this.overlapRow.each(from, to, (p) => {
      const x0 = x(this.overlapRow.starts[p]);
      ctx.fillRect(x0, AXIS, Math.max(x(this.overlapRow.ends[p]) - x0, 1), lanesBottom - AXIS);
    });
    ctx.fillStyle = this.pattern(ctx, "#444");
    this.overlapRow.each(from, to, (p) => {
      const x0 = x(this.overlapRow.starts[p]);
      ctx.fillRect(x0, overlapY, Math.max(x(this.overlapRow.ends[p]) - x0, 1), ROW);
    });
    ctx.fillStyle = "#7a869a";
    const speechY = rows[rows.length - 1].y;
    this.speechRow.each(from, to, (p) => {
      const x0 = x(this.speechRow.starts[p]);
      ctx.fillRect(x0, speechY + 3, Math.max(x(this.speechRow.ends[p]) - x0, 1), ROW - 6);
    });
    // the turns, shaded by confidence; the doubtful ones hatched, with a red foot
    const hatch = this.pattern(ctx, "rgba(255, 255, 255, 0.75)");
    let count = 0;
    this.lanes.forEach((row, lane) => {
      const color = speakerColor(lane);
      const top = this.laneTop(lane) + 2;
      row.each(from, to, (p) => {
        const i = row.indices[p];
        const confidence = this.model.turns[i].confidence;
        const x0 = x(row.starts[p]);
        const w = Math.max(x(row.ends[p]) - x0, 1);
        ctx.globalAlpha = confidence === null ? 1 : 0.3 + 0.7 * confidence;
        ctx.fillStyle = color;
        ctx.fillRect(x0, top, w, LANE - 4);
        ctx.globalAlpha = 1;
        if (confidence !== null && confidence < LOW_CONFIDENCE) {
          if (w >= 4) {
            ctx.fillStyle = hatch;
            ctx.fillRect(x0, top, w, LANE - 4);
          }
          ctx.fillStyle = "#c0182c";
          ctx.fillRect(x0, top + LANE - 7, w, 3);
        }
        this.drawn[count++] = i;
      });
    });
    this.drawnCount = count;
    if (this.selected !== null) {
      const box = this.box(this.selected);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.strokeRect(box.x - 1, box.y - 1, box.width + 2, box.height + 2);
    }
    ctx.restore();
  }

  drawAxis(ctx, from, to, x, bottom) {
    const step = TICKS.find((s) => s * this.pps >= 90) || TICKS[TICKS.length - 1];
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let k = Math.floor(from / step); k * step <= to; k++) {
      const t = Math.round(k * step * 10) / 10; // multiples, not sums: no drift over hours
      const px = Math.round(x(t)) + 0.5;
      ctx.fillStyle = "#e6e8ec";
      ctx.fillRect(px, AXIS, 1, bottom - AXIS);
      ctx.fillStyle = "#333";
      ctx.fillRect(px, AXIS - 6, 1, 6);
      ctx.fillText(tickLabel(t, step), px + 3, AXIS / 2 - 2);
    }
  }

  drawLabels(rows) {
    const ctx = this.ctx;
    const active = new Set(this.activeAt(this.time));
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, AXIS, GUTTER - 4, this.height - AXIS);
    rows.forEach((row, lane) => {
      const mid = row.y + row.height / 2;
      if (row.kind === "speaker") {
        const on = active.has(lane);
        ctx.fillStyle = on ? speakerColor(lane) : "#f1f3f6";
        ctx.fillRect(0, row.y, GUTTER - 8, row.height);
        ctx.fillStyle = speakerColor(lane);
        ctx.fillRect(0, row.y, 5, row.height);
        ctx.fillStyle = on ? "#fff" : "#111";
        ctx.font = `${on ? "bold " : ""}12px system-ui, sans-serif`;
        const name = fitText(ctx, row.label, GUTTER - 20);
        if (row.identified) {
          ctx.fillText(name, 10, mid - 6);
          ctx.font = "10px system-ui, sans-serif";
          ctx.fillText(fitText(ctx, `${row.identified.was} · ${row.identified.similarity.toFixed(2)}`, GUTTER - 20), 10, mid + 7);
        } else {
          ctx.fillText(name, 10, mid);
        }
      } else {
        ctx.fillStyle = "#555";
        ctx.font = "11px system-ui, sans-serif";
        ctx.fillText(row.label, 10, mid);
      }
    });
  }

  drawOverview(from, to) {
    const ctx = this.ctx;
    const top = this.height - OVERVIEW;
    if (!this.overview) this.overview = this.renderOverview(OVERVIEW - 6);
    ctx.clearRect(0, top, this.width, OVERVIEW);
    ctx.fillStyle = "#555";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("whole file", 10, top + OVERVIEW / 2);
    ctx.drawImage(this.overview, GUTTER, top + 3, this.plotWidth, OVERVIEW - 6);
    const scale = this.plotWidth / this.duration;
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(GUTTER + from * scale, top + 1.5, Math.max((to - from) * scale, 2), OVERVIEW - 3);
    if (this.time !== null) {
      ctx.fillStyle = "#d11";
      ctx.fillRect(GUTTER + this.time * scale - 0.5, top, 1.5, OVERVIEW);
    }
  }

  /** The whole file in small, drawn once per result and size. */
  renderOverview(height) {
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(Math.round(this.plotWidth * ratio), 1);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.fillStyle = "#f1f3f6";
    ctx.fillRect(0, 0, this.plotWidth, height);
    const scale = this.plotWidth / this.duration;
    const laneHeight = height / Math.max(this.lanes.length, 1);
    this.lanes.forEach((row, lane) => {
      ctx.fillStyle = speakerColor(lane);
      for (let p = 0; p < row.starts.length; p++) {
        ctx.fillRect(row.starts[p] * scale, lane * laneHeight, Math.max((row.ends[p] - row.starts[p]) * scale, 0.5), laneHeight);
      }
    });
    return canvas;
  }

  pattern(ctx, color) {
    this.patterns = this.patterns || new Map();
    if (!this.patterns.has(color)) {
      const tile = document.createElement("canvas");
      tile.width = tile.height = 6;
      const t = tile.getContext("2d");
      t.strokeStyle = color;
      t.lineWidth = 1.5;
      t.beginPath();
      t.moveTo(0, 6);
      t.lineTo(6, 0);
      t.stroke();
      this.patterns.set(color, ctx.createPattern(tile, "repeat"));
    }
    return this.patterns.get(color);
  }

  // --- pointer and wheel -----------------------------------------------------------------

  listen() {
    const canvas = this.canvas;
    let down = null;
    const point = (e) => {
      const rect = canvas.getBoundingClientRect();
      return { x: e.clientX - rect.left, y: e.clientY - rect.top };
    };
    const inOverview = (p) => p.y >= this.height - OVERVIEW && p.x >= GUTTER;
    const centreOn = (p) => {
      const span = this.plotWidth / this.pps;
      this.start = ((p.x - GUTTER) / this.plotWidth) * this.duration - span / 2;
      this.clamp();
      this.invalidate();
    };
    canvas.addEventListener("pointerdown", (e) => {
      if (!this.model || e.button !== 0) return;
      const p = point(e);
      down = { ...p, start: this.start, moved: false, overview: inOverview(p) };
      canvas.setPointerCapture(e.pointerId);
      if (down.overview) centreOn(p);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!this.model) return;
      const p = point(e);
      if (!down) {
        const turn = this.turnAt(p.x, p.y);
        this.onHover(turn, p);
        canvas.style.cursor = turn !== null ? "pointer" : inOverview(p) ? "col-resize" : "default";
        return;
      }
      if (down.overview) return centreOn(p);
      if (Math.abs(p.x - down.x) > 4) down.moved = true;
      if (down.moved) {
        this.start = down.start - (p.x - down.x) / this.pps;
        this.clamp();
        this.invalidate();
      }
    });
    canvas.addEventListener("pointerup", (e) => {
      if (!down) return;
      const p = point(e);
      const click = !down.moved && !down.overview;
      down = null;
      if (!click || p.x < GUTTER || p.y > this.height - OVERVIEW) return;
      const turn = this.turnAt(p.x, p.y);
      const time = turn !== null ? this.model.turns[turn].start : this.start + (p.x - GUTTER) / this.pps;
      this.onSeek({ time: Math.max(time, 0), turn });
    });
    canvas.addEventListener("pointerleave", () => this.onHover(null, null));
    canvas.addEventListener(
      "wheel",
      (e) => {
        if (!this.model) return;
        e.preventDefault();
        const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? this.plotWidth : 1;
        const dx = (e.shiftKey ? e.deltaY : e.deltaX) * unit;
        const dy = e.shiftKey ? 0 : e.deltaY * unit;
        if (Math.abs(dx) > Math.abs(dy)) this.panBy(dx / this.pps);
        else if (dy) this.zoom(Math.exp(-dy * 0.002), this.start + (point(e).x - GUTTER) / this.pps);
      },
      { passive: false },
    );
  }
}

function tickLabel(t, step) {
  const decimals = step < 1 ? 1 : 0;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = (t % 60).toFixed(decimals).padStart(decimals ? 4 : 2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text.length;
  while (cut > 1 && ctx.measureText(`${text.slice(0, cut)}…`).width > width) cut--;
  return `${text.slice(0, cut)}…`;
}
