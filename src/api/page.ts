/**
 * The diagnostics page: one self-contained HTML document (no external
 * resources; the bike may be offline), live charts drawn on canvases from
 * the SSE stream.
 */
export const DIAGNOSTICS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bike-telemetry diagnostics</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { padding: 8px 16px; background: #222; display: flex; gap: 24px; align-items: baseline; }
  h1 { font-size: 16px; margin: 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px; padding: 12px; }
  section { background: #1b1b1b; border-radius: 6px; padding: 10px; }
  h2 { font-size: 13px; margin: 0 0 6px; color: #aaa; font-weight: 600; text-transform: uppercase; }
  .value { font-size: 32px; font-variant-numeric: tabular-nums; }
  .unit { color: #888; font-size: 14px; }
  canvas { width: 100%; height: 90px; display: block; }
  table { border-collapse: collapse; width: 100%; font-size: 12px; }
  td { padding: 2px 6px; border-bottom: 1px solid #2a2a2a; vertical-align: top; }
  .ok { color: #6c6; } .bad { color: #e66; } .warn { color: #ec6; }
  #errors td:first-child { white-space: nowrap; color: #888; }
</style>
</head>
<body>
<header><h1>bike-telemetry</h1><span id="device">…</span><span id="conn" class="warn">connecting</span><span id="overall"></span></header>
<main>
  <section><h2>Power</h2><div><span class="value" id="power-value">–</span> <span class="unit">W</span></div><canvas id="power-chart" width="600" height="90"></canvas></section>
  <section><h2>Cadence</h2><div><span class="value" id="cadence-value">–</span> <span class="unit">rpm</span></div><canvas id="cadence-chart" width="600" height="90"></canvas></section>
  <section><h2>Heart rate</h2><div><span class="value" id="hr-value">–</span> <span class="unit">bpm</span></div><canvas id="hr-chart" width="600" height="90"></canvas></section>
  <section><h2>Link</h2><table id="link"></table></section>
  <section><h2>Upload</h2><table id="upload"></table></section>
  <section><h2>Ride</h2><table id="ride"></table></section>
  <section style="grid-column: 1 / -1"><h2>Last errors</h2><table id="errors"><tr><td colspan="3">none</td></tr></table></section>
</main>
<script>
"use strict";
const N = 600;
const series = { power: [], cadence: [], hr: [] };
const colors = { power: "#f90", cadence: "#4af", hr: "#e45" };
const $ = (id) => document.getElementById(id);
const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
function push(name, v) { const s = series[name]; s.push(v); if (s.length > N) s.shift(); }
function draw(name) {
  const c = $(name + "-chart"), g = c.getContext("2d"), s = series[name];
  g.clearRect(0, 0, c.width, c.height);
  const vals = s.filter((v) => v !== null);
  if (!vals.length) return;
  const max = Math.max(10, ...vals) * 1.1;
  g.strokeStyle = colors[name]; g.lineWidth = 2; g.beginPath();
  let pen = false;
  s.forEach((v, i) => {
    const x = (i + N - s.length) * c.width / (N - 1);
    if (v === null) { pen = false; return; }
    const y = c.height - (v / max) * c.height;
    if (pen) g.lineTo(x, y); else g.moveTo(x, y);
    pen = true;
  });
  g.stroke();
}
function rows(id, pairs) {
  $(id).innerHTML = pairs.map(([k, v, cls]) => "<tr><td>" + k + "</td><td class='" + (cls || "") + "'>" + String(v).replace(/</g, "&lt;") + "</td></tr>").join("");
}
function onLive(d) {
  push("power", d.powerW); push("cadence", d.cadenceRpm); push("hr", d.hrBpm);
  $("power-value").textContent = fmt(d.powerW, 0);
  $("cadence-value").textContent = fmt(d.cadenceRpm, 0);
  $("hr-value").textContent = fmt(d.hrBpm, 0);
}
function onHealth(h) {
  $("device").textContent = h.deviceId + " · agent " + (h.agentVersion || "");
  $("overall").textContent = h.healthy ? "healthy" : "unhealthy: " + (h.problems || []).join("; ");
  $("overall").className = h.healthy ? "ok" : "bad";
  const l = h.link, c = l.counters;
  rows("link", [["state", l.state, l.state === "open" ? "ok" : "bad"], ["path", l.path], ["frames in", c.framesIn],
    ["bytes in", c.bytesIn], ["reopens", c.opens], ["last error", l.lastError || "–"],
    ["board", h.board.hello ? "fw " + h.board.hello.firmware + " · serial " + h.board.hello.serial : h.board.calibration ? "polled bus · resistance table " + (h.board.calibration.source === "bike" ? "from the bike" : "DEFAULT") : "no hello yet"],
    ["decode errors", Object.values(h.protocol.errors).reduce((a, b) => a + b, 0)]]);
  const u = h.upload, s = h.spool;
  rows("upload", [["state", u.state, u.state === "connected" ? "ok" : u.state === "disabled" ? "" : "warn"],
    ["acked records", u.counters ? u.counters.recordsAcked : "–"], ["backlog", s.records !== undefined ? s.records : s.error],
    ["spool bytes", s.bytes !== undefined ? s.bytes : "–"], ["last error", u.lastError || "–"]]);
  const r = h.ride;
  rows("ride", r ? [["ride", r.ride], ["duration", fmt(r.durationS, 0) + " s"], ["distance", fmt(r.distanceM / 1000, 2) + " km"],
    ["avg power", fmt(r.avgPowerW, 0) + " W"], ["member", r.member ? "yes (pseudonymised)" : "anonymous"]] : [["ride", "none"]]);
}
function onLog(list) {
  if (!list.length) return;
  $("errors").innerHTML = list.slice(-10).reverse().map((e) => "<tr><td>" + e.time + "</td><td class='" + (e.level === "warn" ? "warn" : "bad") + "'>" + e.level +
    "</td><td>" + (e.msg + " " + JSON.stringify(e.fields)).replace(/</g, "&lt;") + "</td></tr>").join("");
}
const logs = [];
async function call(method, params) {
  const r = await fetch("/api", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: 1, method, params: params || {} }) });
  return (await r.json()).result;
}
async function start() {
  try {
    const hist = await call("live.history", { seconds: 60 });
    hist.powerW.forEach((v, i) => { push("power", v); push("cadence", hist.cadenceRpm[i]); push("hr", hist.hrBpm[i]); });
    logs.push(...(await call("log.recent")));
    onLog(logs);
    onHealth(await call("health"));
  } catch (e) { /* the stream below still works */ }
  const es = new EventSource("/api/events?streams=live,health,log");
  es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "ok"; };
  es.onerror = () => { $("conn").textContent = "disconnected, retrying"; $("conn").className = "bad"; };
  es.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.event === "live") onLive(msg.data);
    else if (msg.event === "health") onHealth(msg.data);
    else if (msg.event === "log") { logs.push(msg.data); if (logs.length > 50) logs.shift(); onLog(logs); }
  };
  setInterval(() => { draw("power"); draw("cadence"); draw("hr"); }, 200);
}
start();
</script>
</body>
</html>
`;
