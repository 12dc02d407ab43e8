// A result as the page draws it, read from any JSON the service answers with: a
// /v1/diarize or /v1/audio/diarization answer, a stored result document (the completed
// event's data), a /v1/vad answer, or a job resource that carries one of them.

// Turns under this confidence are the doubtful ones (consumer/formats.py LOW_CONFIDENCE,
// docs/confidence.md): shown hatched and counted.
export const LOW_CONFIDENCE = 0.5;

export class ResultError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The result inside `document` (a job resource's `result`, or the document itself). */
function unwrap(document) {
  if (document && typeof document === "object" && "result" in document && "status" in document && "id" in document) {
    if (document.status !== "completed" || !document.result) {
      const error = document.error || {};
      throw new ResultError(error.code || `job_${document.status}`, error.message || `job ${document.id} is ${document.status}`);
    }
    return document.result;
  }
  return document;
}

/** The page's model of `document`: turns sorted for drawing, lanes, speech, overlaps, transcript. */
export function readResult(document, name = "") {
  const source = unwrap(document);
  if (!source || typeof source !== "object" || Array.isArray(source)) {
    throw new ResultError("invalid_result", "not a diarization result: expected a JSON object");
  }
  if (!Array.isArray(source.segments) && source.summary) {
    throw new ResultError(
      "summarized_result",
      "this event carries a summary only (its result was too large for one Kafka record): open the result object it names",
    );
  }
  if (!Array.isArray(source.segments) && !Array.isArray(source.speech_segments)) {
    throw new ResultError("invalid_result", "not a diarization result: no 'segments' or 'speech_segments'");
  }
  const segments = (source.segments || []).map((s, i) => checkedTurn(s, i));
  const turns = segments.map((s, index) => ({ ...s, index })).sort((a, b) => a.start - b.start || a.end - b.end);
  const given = Array.isArray(source.speech_segments);
  const speech = given ? source.speech_segments.map((s, i) => checkedSpan(s, `speech_segments[${i}]`)) : union(turns);
  const transcript = readTranscript(source.transcript);
  const ends = [...turns.map((t) => t.end), ...speech.map((s) => s.end), ...(transcript ? transcript.segments.map((s) => s.end) : [])];
  const duration = Math.max(Number(source.duration) || 0, ...ends, 0);
  return {
    source,
    name: name || (source.object && source.object.key) || "",
    segments,
    turns,
    speakers: speakersOf(turns, source.identified),
    speech,
    speechDerived: !given,
    overlaps: overlapsOf(turns),
    transcript,
    duration,
    confidence: summary(segments, source.confidence),
  };
}

function checkedTurn(segment, i) {
  const span = checkedSpan(segment, `segments[${i}]`);
  if (typeof segment.speaker !== "string") throw new ResultError("invalid_result", `segments[${i}] has no speaker`);
  const confidence = typeof segment.confidence === "number" ? segment.confidence : null;
  return { start: span.start, end: span.end, speaker: segment.speaker, confidence };
}

function checkedSpan(span, where) {
  if (!span || typeof span.start !== "number" || typeof span.end !== "number" || !(span.end >= span.start)) {
    throw new ResultError("invalid_result", `${where} needs numbers start <= end`);
  }
  return { start: span.start, end: span.end };
}

/** One lane per speaker, in order of first speech; the names voiceprints gave, with the label they replaced. */
function speakersOf(turns, identified) {
  const lanes = [];
  const seen = new Map();
  for (const turn of turns) {
    if (seen.has(turn.speaker)) continue;
    const match = identified && identified[turn.speaker];
    const lane = { label: turn.speaker, identified: match ? { was: match.speaker, similarity: match.similarity } : null };
    seen.set(turn.speaker, lanes.length);
    lanes.push(lane);
  }
  return lanes;
}

/** Speech as the union of the turns, where the answer has no speech regions of its own (/v1/diarize). */
function union(sortedTurns) {
  const out = [];
  for (const turn of sortedTurns) {
    const last = out[out.length - 1];
    if (last && turn.start <= last.end) last.end = Math.max(last.end, turn.end);
    else out.push({ start: turn.start, end: turn.end });
  }
  return out;
}

/** Where two or more speakers talk at once: a sweep over turn starts and ends (an end before a start at one instant). */
function overlapsOf(turns) {
  const events = [];
  for (const t of turns) {
    if (t.end > t.start) events.push([t.start, 1], [t.end, -1]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out = [];
  let active = 0;
  let from = 0;
  for (const [time, change] of events) {
    const before = active;
    active += change;
    if (before < 2 && active >= 2) from = time;
    else if (before >= 2 && active < 2 && time > from) out.push({ start: from, end: time });
  }
  return out;
}

function readTranscript(transcript) {
  if (!transcript || !Array.isArray(transcript.segments)) return null;
  const segments = transcript.segments.map((s, i) => ({ ...checkedSpan(s, `transcript.segments[${i}]`), speaker: String(s.speaker || ""), text: String(s.text || "") }));
  const words = (transcript.words || []).map((w, i) => ({ ...checkedSpan(w, `transcript.words[${i}]`), speaker: String(w.speaker || ""), word: String(w.word || "") }));
  return { segments, words };
}

/** The answer's confidence summary, or one computed as the service computes it. */
function summary(segments, given) {
  if (given && typeof given.mean === "number") return given;
  const scored = segments.filter((s) => s.confidence !== null);
  if (!scored.length) return null;
  const seconds = scored.reduce((sum, s) => sum + s.end - s.start, 0);
  const low = scored.filter((s) => s.confidence < LOW_CONFIDENCE);
  return {
    mean: seconds ? scored.reduce((sum, s) => sum + (s.end - s.start) * s.confidence, 0) / seconds : 0,
    low_turns: low.length,
    low_seconds: low.reduce((sum, s) => sum + s.end - s.start, 0),
  };
}

/** `seconds` as h:mm:ss.d (or m:ss.d under an hour). */
export function clock(seconds, decimals = 1) {
  const sign = seconds < 0 ? "-" : "";
  const scale = 10 ** decimals;
  const total = Math.round(Math.abs(seconds) * scale) / scale; // 59.96 is 1:00.0, not 0:60.0
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = (total % 60).toFixed(decimals).padStart(decimals ? 3 + decimals : 2, "0");
  return h ? `${sign}${h}:${String(m).padStart(2, "0")}:${s}` : `${sign}${m}:${s}`;
}
