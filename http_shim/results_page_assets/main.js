// The results page: submit a file (or open a result), look at the timeline, listen, read
// the transcript, download. Wires the modules together; holds the page's state.

import { Api, ApiError } from "./api.js";
import { doorFor } from "./doors.js";
import { exportHtml } from "./export.js";
import { toJson, toRttm, toSrt, toVtt, rttmUri } from "./formats.js";
import { LOW_CONFIDENCE, ResultError, clock, readResult } from "./result.js";
import { Timeline } from "./timeline.js";
import { TranscriptView } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const SEEK_SLACK = 0.02; // seconds

const state = {
  door: null,
  capabilities: { jobs: false, max_audio_bytes: Infinity },
  result: null,
  job: null,
  audioUrl: null, // an object URL of the chosen file, revoked when another replaces it
  reach: null, // reach[i]: the latest end among the first i+1 turns (by start)
  playhead: null, // where the cursor is when no audio plays
  selected: null, // the outlined turn: chosen, or under the playhead
  voiceprints: [], // {name, document, use}
  running: null, // the AbortController of the submission under way
};

const api = new Api(askForKey);
const audio = $("audio");
const timeline = new Timeline($("timeline"), { onSeek: ({ time, turn }) => seek(time, { turn, play: true }), onHover: hover });
const transcript = new TranscriptView($("transcript"), { onSeek: (time) => seek(time, { play: true }) });

// --- the API key -----------------------------------------------------------------------

function askForKey(reason) {
  const dialog = $("key-dialog");
  if (!$("progress").hidden) progress("Waiting for the API key…");
  $("key-reason").textContent = reason;
  $("key-input").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (key) => {
      $("key-form").removeEventListener("submit", use);
      dialog.removeEventListener("cancel", cancel);
      $("key-cancel").removeEventListener("click", cancel);
      if (dialog.open) dialog.close();
      resolve(key);
    };
    const use = (e) => {
      e.preventDefault();
      done($("key-input").value.trim());
    };
    const cancel = (e) => {
      e.preventDefault();
      done("");
    };
    $("key-form").addEventListener("submit", use);
    dialog.addEventListener("cancel", cancel);
    $("key-cancel").addEventListener("click", cancel);
  });
}

// --- messages ----------------------------------------------------------------------------

function showError(error) {
  const code = error instanceof ApiError || error instanceof ResultError ? error.code : "page_error";
  $("error-code").textContent = code;
  $("error-message").textContent = error.message;
  $("error").dataset.code = code;
  $("error").hidden = false;
  if (!(error instanceof ApiError || error instanceof ResultError)) console.warn(error);
}

function clearError() {
  $("error").hidden = true;
  delete $("error").dataset.code;
}

function progress(text, fraction = null) {
  $("progress").hidden = text === null;
  $("progress-text").textContent = text || "";
  const bar = $("progress-bar");
  if (fraction === null) bar.removeAttribute("value");
  else bar.value = fraction;
}

// --- submitting --------------------------------------------------------------------------

function chosenFile() {
  return $("file").files[0] || null;
}

function form(file) {
  const data = new FormData();
  data.append("file", file, file.name);
  const mode = $("speaker-mode").value;
  if (mode === "exactly") data.append("num_speakers", $("num-speakers").value);
  if (mode === "range") {
    if ($("min-speakers").value) data.append("min_speakers", $("min-speakers").value);
    if ($("max-speakers").value) data.append("max_speakers", $("max-speakers").value);
  }
  if ($("exclusive").checked) data.append("exclusive", "true");
  const words = $("transcript-file").files[0];
  if (words) data.append("transcript", words, words.name);
  const known = state.voiceprints.filter((v) => v.use);
  if (known.length) data.append("voiceprints", JSON.stringify(Object.fromEntries(known.map((v) => [v.name, v.document]))));
  return data;
}

async function submit(event) {
  event.preventDefault();
  const file = chosenFile();
  if (!file) return showError(new ApiError(0, "missing_file", "choose or drop an audio or video file first"));
  if (file.size > state.capabilities.max_audio_bytes) {
    return showError(new ApiError(413, "payload_too_large", `${file.name} is ${megabytes(file.size)}; this service takes up to ${megabytes(state.capabilities.max_audio_bytes)}`));
  }
  clearError();
  const running = new AbortController();
  state.running = running;
  setBusy(true);
  const began = performance.now();
  const ticker = setInterval(() => waiting(began), 1000);
  let phase = "upload";
  const onProgress = (p) => {
    phase = p.phase;
    if (p.job) state.job = p.job;
    if (p.phase === "upload") progress(`Uploading ${file.name}${p.fraction === null ? "" : ` (${Math.round(p.fraction * 100)} %)`}`, p.fraction);
    else waiting(began, p);
  };
  const waiting = (since, p = { phase }) => {
    if (phase === "upload" || $("key-dialog").open) return;
    const seconds = Math.round((performance.now() - since) / 1000);
    if (p.phase === "processing") progress(`Diarizing ${file.name}… ${seconds} s`);
    else if (p.phase === "queued") progress(`Job queued… ${seconds} s`);
    else if (p.phase === "running") progress(`Job running${p.stage ? ` (${p.stage})` : ""}… ${seconds} s`, p.fraction ?? null);
  };
  try {
    const { result, job } = await state.door.submit(form(file), { onProgress, signal: running.signal });
    show(readResult(result, file.name), { file, job });
    $("status").textContent = `${file.name}: answered in ${((performance.now() - began) / 1000).toFixed(1)} s${job ? ` (job ${job.id})` : ""}`;
  } catch (error) {
    if (error.code === "canceled" && state.job && state.door.cancel) state.door.cancel(state.job.id).catch(() => {});
    showError(error);
  } finally {
    clearInterval(ticker);
    state.running = null;
    setBusy(false);
    progress(null);
  }
}

function setBusy(busy) {
  $("submit-button").disabled = busy;
  $("cancel").hidden = !busy;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

// --- known speakers ----------------------------------------------------------------------

function drawVoiceprints() {
  const list = $("voiceprint-list");
  list.replaceChildren(
    ...state.voiceprints.map((v, i) => {
      const item = document.createElement("li");
      const use = document.createElement("input");
      use.type = "checkbox";
      use.checked = v.use;
      use.addEventListener("change", () => (v.use = use.checked));
      const name = document.createElement("input");
      name.value = v.name;
      name.setAttribute("aria-label", "speaker name");
      name.addEventListener("change", () => (v.name = name.value.trim()));
      const save = button("Save", () => download(`${v.name || "speaker"}.voiceprint.json`, JSON.stringify(v.document), "application/json"));
      const remove = button("Remove", () => {
        state.voiceprints.splice(i, 1);
        drawVoiceprints();
      });
      const seconds = document.createElement("span");
      seconds.className = "muted";
      seconds.textContent = `${Number(v.document.speech_seconds || 0).toFixed(1)} s of speech`;
      item.append(use, name, seconds, save, remove);
      return item;
    }),
  );
}

async function loadVoiceprints() {
  for (const file of $("voiceprint-files").files) {
    try {
      const voiceprint = JSON.parse(await file.text());
      if (voiceprint.type !== "diarization-voiceprint") throw new ResultError("invalid_voiceprint", `${file.name} is not a voiceprint document`);
      state.voiceprints.push({ name: file.name.replace(/(\.voiceprint)?\.json$/i, ""), document: voiceprint, use: true });
    } catch (error) {
      showError(error instanceof ResultError ? error : new ResultError("invalid_voiceprint", `${file.name}: ${error.message}`));
    }
  }
  $("voiceprint-files").value = "";
  drawVoiceprints();
}

async function enrol() {
  const clip = $("enrol-file").files[0];
  const name = $("enrol-name").value.trim();
  if (!clip || !name) return showError(new ApiError(0, "invalid_voiceprint", "give the speaker's name and a clip of their voice alone (3 to 60 s of speech)"));
  clearError();
  const data = new FormData();
  data.append("file", clip, clip.name);
  $("enrol").disabled = true;
  progress(`Enrolling ${name}…`);
  try {
    const answer = await api.post("../v1/voiceprints", data);
    state.voiceprints.push({ name, document: answer.body, use: true });
    $("enrol-name").value = "";
    $("enrol-file").value = "";
    drawVoiceprints();
  } catch (error) {
    showError(error);
  } finally {
    $("enrol").disabled = false;
    progress(null);
  }
}

// --- opening results and jobs -----------------------------------------------------------

async function openResultFile() {
  const file = $("result-file").files[0];
  if (!file) return;
  clearError();
  try {
    const began = performance.now();
    const opened = JSON.parse(await file.text());
    const result = readResult(opened, "");
    if (!result.name) result.name = file.name.replace(/\.json$/i, "");
    show(result, { job: opened.result && opened.id ? opened : null });
    performance.measure("result-opened", { start: began, end: performance.now() });
    $("status").textContent = `${file.name}: opened`;
  } catch (error) {
    showError(error instanceof SyntaxError ? new ResultError("invalid_result", `${file.name} is not JSON: ${error.message}`) : error);
  } finally {
    $("result-file").value = "";
  }
}

async function openJob(id) {
  clearError();
  progress(`Opening job ${id}…`);
  try {
    const { result, job } = await state.door.open(id, { onProgress: (p) => progress(`Job ${id}: ${p.phase}`, p.fraction ?? null) });
    show(readResult(result, ""), { job });
    history.replaceState(null, "", `#job=${encodeURIComponent(id)}`);
  } catch (error) {
    showError(error);
  } finally {
    progress(null);
  }
}

async function listJobs(cursor = null) {
  try {
    const page = await state.door.list({ cursor });
    const list = $("job-list");
    if (!cursor) list.replaceChildren();
    for (const job of page.jobs) {
      const item = document.createElement("li");
      item.append(button(job.id, () => openJob(job.id)), ` ${job.status} · ${job.created_at || ""}`);
      list.append(item);
    }
    $("more-jobs").hidden = !page.next_cursor;
    $("more-jobs").onclick = () => listJobs(page.next_cursor);
  } catch (error) {
    showError(error);
  }
}

// --- showing a result ---------------------------------------------------------------------

function show(result, { file = null, job = null } = {}) {
  state.result = result;
  state.job = job;
  state.selected = null;
  state.playhead = null;
  let latest = -Infinity;
  state.reach = Float64Array.from(result.turns, (t) => (latest = Math.max(latest, t.end)));
  $("result").hidden = false;
  $("result-name").textContent = result.name || "result";
  $("summary").textContent = describe(result);
  timeline.setModel(result);
  const lanes = new Map(result.speakers.map((s, i) => [s.label, i]));
  transcript.setTranscript(result.transcript, (speaker) => lanes.get(speaker));
  $("read").hidden = !result.transcript;
  if (file) listen(URL.createObjectURL(file), true);
  else if (job && state.door.audioUrl && state.door.audioUrl(job)) listen(state.door.audioUrl(job), false);
  else listen(null, false);
  speaking(null);
}

function describe(result) {
  const parts = [`${result.speakers.length} speakers`, `${result.turns.length} turns`, clock(result.duration)];
  const c = result.confidence;
  if (c) parts.push(`confidence ${c.mean.toFixed(2)}, ${c.low_turns} turns under ${LOW_CONFIDENCE} (${c.low_seconds.toFixed(1)} s)`);
  for (const s of result.speakers) {
    if (s.identified) parts.push(`${s.label} = ${s.identified.was} (${s.identified.similarity.toFixed(2)})`);
  }
  if (result.speechDerived) parts.push("speech lane: the union of the turns");
  return parts.join(" · ");
}

/** Play `url` with the result (a local file's object URL, or a job's audio), or nothing. */
function listen(url, owned) {
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = owned ? url : null;
  audio.pause();
  if (url) audio.src = url;
  else audio.removeAttribute("src");
  audio.load();
  $("player").hidden = !url;
  $("attach").hidden = Boolean(url);
}

function attachAudio() {
  const file = $("attach-file").files[0];
  if (file && state.result) listen(URL.createObjectURL(file), true);
  $("attach-file").value = "";
}

// --- listening and moving ------------------------------------------------------------------

const hasAudio = () => Boolean(audio.getAttribute("src"));
const now = () => (hasAudio() ? audio.currentTime : (state.playhead ?? 0));

function seek(time, { turn = null, play = false } = {}) {
  if (!state.result) return;
  if (turn !== null) select(turn);
  if (hasAudio()) {
    audio.currentTime = time;
    if (play) audio.play().catch((error) => showError(new ApiError(0, "playback_failed", error.message)));
  } else {
    state.playhead = time;
  }
  moved(time);
}

function select(turn) {
  state.selected = turn;
  timeline.select(turn);
}

/** The playhead is at `time`: cursor, outlined turn, transcript, who speaks. */
function moved(time) {
  timeline.setTime(time);
  if (hasAudio() && !audio.paused) timeline.reveal(time);
  const turns = state.result.turns;
  const current = state.selected === null ? null : turns[state.selected];
  // a seek lands on a sample, a hair before the turn's start: still that turn
  if (!current || time < current.start - SEEK_SLACK || time > current.end) select(turnUnder(time));
  transcript.follow(time);
  speaking(time);
}

/** The latest-starting turn that contains `time`, or null: back from the last turn started, while any earlier one can reach. */
function turnUnder(time) {
  const turns = state.result.turns;
  for (let i = lastStartingBy(time); i >= 0 && state.reach[i] >= time; i--) {
    if (turns[i].end >= time) return i;
  }
  return null;
}

/** The index of the last turn starting at or before `time` (-1 if none). */
function lastStartingBy(time) {
  const turns = state.result.turns;
  let lo = 0;
  let hi = turns.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (turns[mid].start <= time) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** The next (+1) or previous (-1) turn from the outlined one, or from the playhead. */
function step(direction) {
  if (!state.result || !state.result.turns.length) return;
  const turns = state.result.turns;
  let target;
  if (state.selected !== null) target = state.selected + direction;
  else {
    const time = now();
    const last = lastStartingBy(time);
    target = direction > 0 ? last + 1 : turns[last] && turns[last].start < time ? last : last - 1;
  }
  target = Math.min(Math.max(target, 0), turns.length - 1);
  seek(turns[target].start, { turn: target });
  timeline.reveal(turns[target].start);
}

function speaking(time) {
  const lanes = time === null ? [] : timeline.activeAt(time);
  const names = lanes.map((lane) => state.result.speakers[lane].label);
  const text = names.length ? `Speaking: ${names.join(" and ")}` : time === null ? "" : "Nobody speaking";
  if ($("now-speaking").textContent !== text) $("now-speaking").textContent = text;
}

let frame = 0;
function follow() {
  moved(audio.currentTime);
  if (!audio.paused) frame = requestAnimationFrame(follow);
}

function hover(turn, point) {
  const tip = $("tip");
  if (turn === null || !point) {
    tip.hidden = true;
    return;
  }
  const t = state.result.turns[turn];
  const confidence = t.confidence === null ? "" : ` · confidence ${t.confidence.toFixed(2)}${t.confidence < LOW_CONFIDENCE ? " (low)" : ""}`;
  tip.textContent = `${t.speaker} · ${clock(t.start, 2)} to ${clock(t.end, 2)}${confidence}`;
  tip.style.left = `${point.x + 12}px`;
  tip.style.top = `${point.y + 12}px`;
  tip.hidden = false;
}

function onKey(e) {
  if (!state.result || e.altKey || e.ctrlKey || e.metaKey || $("key-dialog").open) return;
  if (e.target.closest("input, select, textarea, button, audio, a, summary")) return;
  const span = timeline.plotWidth / timeline.pps;
  const keys = {
    " ": () => hasAudio() && (audio.paused ? audio.play().catch(() => {}) : audio.pause()),
    k: () => hasAudio() && (audio.paused ? audio.play().catch(() => {}) : audio.pause()),
    ArrowRight: () => step(1),
    n: () => step(1),
    ArrowLeft: () => step(-1),
    p: () => step(-1),
    "+": () => timeline.zoom(1.5, now()),
    "=": () => timeline.zoom(1.5, now()),
    "-": () => timeline.zoom(1 / 1.5, now()),
    0: () => timeline.fit(),
    PageDown: () => timeline.panBy(span * 0.9),
    PageUp: () => timeline.panBy(-span * 0.9),
    Home: () => timeline.panBy(-timeline.duration),
    End: () => timeline.panBy(timeline.duration),
  };
  if (keys[e.key]) {
    e.preventDefault();
    keys[e.key]();
  }
}

// --- downloads ---------------------------------------------------------------------------

function download(name, text, type) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

const DOWNLOADS = {
  json: [toJson, ".json", "application/json"],
  rttm: [toRttm, ".rttm", "text/plain"],
  srt: [toSrt, ".srt", "application/x-subrip"],
  vtt: [toVtt, ".vtt", "text/vtt"],
};

async function save(kind) {
  const result = state.result;
  const stem = rttmUri(result.name || "result");
  try {
    if (kind === "html") return download(`${stem}.timeline.html`, await exportHtml(result, describe(result)), "text/html");
    const [write, suffix, type] = DOWNLOADS[kind];
    download(`${stem}${suffix}`, write(result), type);
  } catch (error) {
    showError(error);
  }
}

// --- start -------------------------------------------------------------------------------

async function start() {
  try {
    const answer = await fetch("capabilities.json");
    if (answer.ok) state.capabilities = await answer.json();
  } catch {
    // an older shim without it: the sync door
  }
  state.door = doorFor(api, state.capabilities);
  document.body.dataset.door = state.door.kind;
  $("jobs").hidden = state.door.kind !== "jobs";
  if (state.door.kind === "jobs") {
    listJobs();
    const id = new URLSearchParams(location.hash.slice(1)).get("job");
    if (id) openJob(id);
  }
  document.body.dataset.ready = "true";
}

$("submit-form").addEventListener("submit", submit);
$("cancel").addEventListener("click", () => state.running && state.running.abort());
$("speaker-mode").addEventListener("change", () => {
  const mode = $("speaker-mode").value;
  $("exactly").hidden = mode !== "exactly";
  $("range").hidden = mode !== "range";
});
$("file").addEventListener("change", () => {
  const file = chosenFile();
  $("file-name").textContent = file ? `${file.name} (${megabytes(file.size)})` : "";
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) {
    $("file").files = e.dataTransfer.files;
    $("file").dispatchEvent(new Event("change"));
  }
});
$("voiceprint-files").addEventListener("change", loadVoiceprints);
$("enrol").addEventListener("click", enrol);
$("result-file").addEventListener("change", openResultFile);
$("attach-file").addEventListener("change", attachAudio);
$("job-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("job-id").value.trim();
  if (id) openJob(id);
});
for (const b of document.querySelectorAll("[data-save]")) b.addEventListener("click", () => save(b.dataset.save));
$("zoom-in").addEventListener("click", () => timeline.zoom(1.5, now()));
$("zoom-out").addEventListener("click", () => timeline.zoom(1 / 1.5, now()));
$("zoom-fit").addEventListener("click", () => timeline.fit());
audio.addEventListener("play", () => {
  cancelAnimationFrame(frame);
  frame = requestAnimationFrame(follow);
});
audio.addEventListener("seeked", () => moved(audio.currentTime));
audio.addEventListener("pause", () => moved(audio.currentTime));
audio.addEventListener("loadedmetadata", () => {
  if (Number.isFinite(audio.duration)) timeline.duration = audio.duration;
});
document.addEventListener("keydown", onKey);

// What the page shows, for a look from the browser's console (and the page's tests).
window.diarizationPage = {
  timeline,
  transcript,
  audio,
  get result() {
    return state.result;
  },
  get selected() {
    return state.selected;
  },
  get door() {
    return state.door && state.door.kind;
  },
};

start();
