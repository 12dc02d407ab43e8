// A self-contained HTML file of one result: the same timeline (this page's timeline.js,
// inlined), the result's turns as data, no audio and nothing fetched from anywhere, to
// share with someone who has no access to the service.

import { clock } from "./result.js";

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#111}
h1{font-size:1.2rem;margin:0 0 .25rem}p{margin:.25rem 0 .75rem;color:#444}
canvas{display:block;width:100%;border:1px solid #d5d9e0;border-radius:4px;touch-action:none}
#info{min-height:1.4em;font-variant-numeric:tabular-nums}kbd{border:1px solid #bbb;border-radius:3px;padding:0 .3em}`;

/** The HTML text of the export of `result`. */
export async function exportHtml(result, description) {
  const response = await fetch("timeline.js");
  const code = await response.text();
  if (!response.ok || code.includes("</script")) throw new Error("cannot inline timeline.js");
  const model = {
    turns: result.turns.map(({ start, end, speaker, confidence }) => ({ start, end, speaker, confidence })),
    speakers: result.speakers,
    speech: result.speech,
    speechDerived: result.speechDerived,
    overlaps: result.overlaps,
    duration: result.duration,
  };
  // "<" escaped: no text of the result can close the script element it travels in
  const data = JSON.stringify({ name: result.name || "result", description, model }).replaceAll("<", "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Who spoke when</title>
<style>${STYLE}</style>
</head>
<body>
<h1 id="name"></h1>
<p id="description"></p>
<canvas id="timeline" tabindex="0" aria-label="speaker timeline"></canvas>
<p id="info"></p>
<p>Zoom: wheel or <kbd>+</kbd> <kbd>-</kbd>, <kbd>0</kbd> the whole file; pan: drag, shift+wheel, <kbd>PageUp</kbd> <kbd>PageDown</kbd>.</p>
<script type="application/json" id="data">${data}</script>
<script type="module">
${code}
${bootstrap.toString()}
bootstrap(Timeline, ${clock.toString()});
</script>
</body>
</html>
`;
}

// Runs in the exported file (inlined by its source text: no imports there).
function bootstrap(Timeline, clock) {
  const data = JSON.parse(document.getElementById("data").textContent);
  document.title = `${data.name}: who spoke when`;
  document.getElementById("name").textContent = data.name;
  document.getElementById("description").textContent = data.description;
  const info = document.getElementById("info");
  const say = (turn) => {
    if (turn === null) return;
    const t = timeline.model.turns[turn];
    const confidence = t.confidence === null ? "" : `, confidence ${t.confidence.toFixed(2)}`;
    info.textContent = `${t.speaker}: ${clock(t.start)} to ${clock(t.end)}${confidence}`;
  };
  const timeline = new Timeline(document.getElementById("timeline"), {
    onSeek: ({ time, turn }) => {
      timeline.setTime(time);
      timeline.select(turn);
      say(turn);
    },
    onHover: (turn) => say(turn),
  });
  timeline.setModel(data.model);
  document.addEventListener("keydown", (e) => {
    const span = timeline.plotWidth / timeline.pps;
    const keys = { "+": () => timeline.zoom(1.5), "=": () => timeline.zoom(1.5), "-": () => timeline.zoom(1 / 1.5), 0: () => timeline.fit(), PageDown: () => timeline.panBy(span * 0.9), PageUp: () => timeline.panBy(-span * 0.9) };
    if (keys[e.key]) {
      e.preventDefault();
      keys[e.key]();
    }
  });
  window.diarizationExport = { timeline };
}
