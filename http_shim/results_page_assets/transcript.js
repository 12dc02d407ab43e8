// The transcript beside the timeline: each segment with its speaker, the one being played
// highlighted (and its words, one by one) and kept in view. Rows off screen are not laid
// out (content-visibility: auto), so a four-hour transcript stays light; words are drawn
// for the current segment only.

import { clock } from "./result.js";
import { speakerColor } from "./timeline.js";

export class TranscriptView {
  /** `onSeek(time)`: a click on a segment or a word. */
  constructor(container, { onSeek = () => {} } = {}) {
    this.container = container;
    this.segments = [];
    this.words = [];
    this.current = null;
    container.addEventListener("click", (e) => {
      const word = e.target.closest("[data-word]");
      const row = e.target.closest("[data-index]");
      if (word) onSeek(this.words[Number(word.dataset.word)].start);
      else if (row) onSeek(this.segments[Number(row.dataset.index)].start);
    });
  }

  /** Show `transcript` ({segments, words}, or null for none); `laneOf(speaker)` picks each speaker's colour. */
  setTranscript(transcript, laneOf) {
    this.container.replaceChildren();
    this.current = null;
    this.segments = transcript ? transcript.segments : [];
    this.words = transcript ? transcript.words : [];
    this.wordStarts = Float64Array.from(this.words, (w) => w.start);
    this.container.hidden = !transcript;
    const rows = document.createDocumentFragment();
    this.segments.forEach((segment, i) => {
      const row = document.createElement("div");
      row.className = "line";
      row.dataset.index = String(i);
      row.dataset.speaker = segment.speaker;
      const lane = laneOf(segment.speaker);
      row.style.setProperty("--speaker", lane === undefined ? "#888" : speakerColor(lane));
      const when = document.createElement("span");
      when.className = "when";
      when.textContent = clock(segment.start);
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = segment.speaker;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = segment.text.trim();
      row.append(when, who, text);
      rows.append(row);
    });
    this.container.append(rows);
  }

  /** Highlight the segment (and word) at `time`, and keep it in view. */
  follow(time) {
    const index = this.segmentAt(time);
    if (index !== this.current) {
      if (this.current !== null) this.unmark(this.current);
      this.current = index;
      if (index !== null) this.mark(index);
    }
    if (index !== null) this.markWord(time);
  }

  segmentAt(time) {
    let lo = 0;
    let hi = this.segments.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.segments[mid].start <= time) lo = mid + 1;
      else hi = mid;
    }
    const i = lo - 1;
    return i >= 0 && this.segments[i].end >= time ? i : null;
  }

  row(index) {
    return this.container.children[index];
  }

  mark(index) {
    const row = this.row(index);
    const segment = this.segments[index];
    row.classList.add("current");
    // the text's own tokens (with their punctuation) become the words, when they pair up
    const tokens = segment.text.trim().split(/\s+/).filter(Boolean);
    const words = this.wordsOf(segment);
    if (words.length && words.length === tokens.length) {
      row.querySelector(".text").replaceChildren(
        ...words.flatMap((w, k) => {
          const span = document.createElement("span");
          span.dataset.word = String(w);
          span.textContent = tokens[k];
          return k ? [" ", span] : [span];
        }),
      );
    }
    // keep the row in view inside the transcript's own scroll box, not the page's
    const box = this.container;
    if (row.offsetTop < box.scrollTop || row.offsetTop + row.offsetHeight > box.scrollTop + box.clientHeight) {
      box.scrollTop = row.offsetTop - box.clientHeight / 3;
    }
  }

  unmark(index) {
    const row = this.row(index);
    row.classList.remove("current");
    row.querySelector(".text").textContent = this.segments[index].text.trim();
  }

  markWord(time) {
    const row = this.row(this.current);
    let said = null;
    for (const span of row.querySelectorAll("[data-word]")) {
      if (this.words[Number(span.dataset.word)].start <= time) said = span;
    }
    for (const span of row.querySelectorAll(".said")) if (span !== said) span.classList.remove("said");
    if (said) said.classList.add("said");
  }

  /** Indices of the words inside `segment` (by their middle), found by binary search. */
  wordsOf(segment) {
    let lo = 0;
    let hi = this.wordStarts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.wordStarts[mid] < segment.start - 0.5) lo = mid + 1;
      else hi = mid;
    }
    const out = [];
    for (let i = lo; i < this.words.length && this.words[i].start <= segment.end; i++) {
      const middle = (this.words[i].start + this.words[i].end) / 2;
      if (middle >= segment.start && middle <= segment.end) out.push(i);
    }
    return out;
  }
}
