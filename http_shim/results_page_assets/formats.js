// The downloads, written in the page from the result it holds, byte for byte as the API
// writes them (consumer/formats.py to_rttm; consumer/transcript.py to_srt, to_vtt): a sync
// result has no copy on the server, so asking the API for another format would upload and
// diarize the file again; an opened result document or an HTML export has no server at all.

/** The result as JSON, as the service answered it. */
export function toJson(result) {
  return JSON.stringify(result.source, null, 2) + "\n";
}

/** RTTM lines in the answer's order: `SPEAKER <uri> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`. */
export function toRttm(result) {
  const uri = rttmUri(result.name || "audio");
  return result.segments
    .map((t) => `SPEAKER ${uri} 1 ${fixed3(t.start)} ${fixed3(t.end - t.start)} <NA> <NA> ${t.speaker} <NA> <NA>\n`)
    .join("");
}

/** SubRip cues: the transcript's segments with their speakers, or the turns without text. */
export function toSrt(result) {
  return cues(result)
    .map((s, i) => `${i + 1}\n${stamp(s.start, ",")} --> ${stamp(s.end, ",")}\n${s.text ? `${s.speaker}: ${s.text}` : s.speaker}\n\n`)
    .join("");
}

/** WebVTT cues with the speaker as a voice span. */
export function toVtt(result) {
  const body = cues(result)
    .map((s) => `${stamp(s.start, ".")} --> ${stamp(s.end, ".")}\n<v ${s.speaker}>${escapeVtt(s.text)}\n\n`)
    .join("");
  return `WEBVTT\n\n${body}`;
}

function cues(result) {
  if (result.transcript) return result.transcript.segments.map((s) => ({ ...s, text: s.text.trim() }));
  // the turns as a transcript without text, ordered by start only (a stable sort, as Python's)
  return [...result.segments].sort((a, b) => a.start - b.start).map((t) => ({ ...t, text: "" }));
}

function escapeVtt(text) {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** A file id usable in RTTM (no whitespace), from a file or object name: consumer.formats.rttm_uri. */
export function rttmUri(name) {
  const base = name.slice(name.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  const stem = dot >= 0 ? base.slice(0, dot) : base;
  return stem.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._-]+|[._-]+$/g, "") || "audio";
}

/** `h:mm:ss,mmm`: milliseconds rounded half to even, as Python's round() does. */
function stamp(seconds, decimal) {
  const millis = roundHalfEven(seconds * 1000);
  const hours = Math.floor(millis / 3_600_000);
  const minutes = Math.floor((millis % 3_600_000) / 60_000);
  const secs = Math.floor((millis % 60_000) / 1000);
  const rest = millis % 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(hours)}:${two(minutes)}:${two(secs)}${decimal}${String(rest).padStart(3, "0")}`;
}

function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor; // exact for the magnitudes of times
  if (diff !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * `value` with three decimals, as Python's `f"{value:.3f}"`: rounded from the exact binary
 * value, exact ties to even. `toFixed(3)` rounds exact ties away from zero (0.0625 -> "0.063",
 * Python "0.062"), so the exact expansion (toFixed(100): every digit of a double above 1e-15)
 * is rounded here.
 */
function fixed3(value) {
  if (value < 0) return `-${fixed3(-value)}`;
  const [whole, fraction] = value.toFixed(100).split(".");
  const kept = BigInt(whole + fraction.slice(0, 3));
  const rest = fraction.slice(3);
  const half = "5".padEnd(rest.length, "0");
  const up = rest > half || (rest === half && kept % 2n === 1n);
  const digits = String(up ? kept + 1n : kept).padStart(4, "0");
  return `${digits.slice(0, -3)}.${digits.slice(-3)}`;
}
