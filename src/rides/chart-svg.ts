/**
 * A ride as an SVG chart: power, cadence and heart rate against time (1 Hz
 * series), with the ride's summary figures. Plain SVG 1.1, no scripts or
 * external resources, so any browser or image viewer shows it.
 */
import type { RideSummary } from '../contracts/health.js';

export interface RideSeries {
  powerW: ArrayLike<number>;
  cadenceRpm: ArrayLike<number>;
  hrBpm: ArrayLike<number>;
}

const W = 960;
const PANEL_H = 150;
const LEFT = 60;
const RIGHT = 20;
const TOP = 110;
const GAP = 30;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f = (v: number | null, d = 0, unit = ''): string => (v === null || !Number.isFinite(v) ? '–' : `${v.toFixed(d)}${unit}`);

function niceMax(max: number): number {
  if (max <= 0) return 10;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

function panel(values: ArrayLike<number>, y0: number, label: string, unit: string, color: string, n: number): string {
  let max = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i]) && values[i] > max) max = values[i];
  const top = niceMax(max * 1.05);
  const plotW = W - LEFT - RIGHT;
  const x = (i: number): number => LEFT + (n <= 1 ? 0 : (i / (n - 1)) * plotW);
  const y = (v: number): number => y0 + PANEL_H - (v / top) * PANEL_H;
  // Break the line where a value is unknown: no invented data.
  const segments: string[] = [];
  let cur: string[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      if (cur.length) segments.push(cur.join(' '));
      cur = [];
      continue;
    }
    cur.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  }
  if (cur.length) segments.push(cur.join(' '));
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map((k) => {
      const gy = y0 + PANEL_H - k * PANEL_H;
      return `<line x1="${LEFT}" y1="${gy}" x2="${W - RIGHT}" y2="${gy}" stroke="#ddd"/><text x="${LEFT - 6}" y="${gy + 4}" text-anchor="end" font-size="11" fill="#666">${+(k * top).toFixed(1)}</text>`;
    })
    .join('');
  const lines = segments.map((pts) => `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts}"/>`).join('');
  return `<g class="panel" data-series="${esc(label)}"><text x="${LEFT}" y="${y0 - 6}" font-size="13" font-weight="bold" fill="${color}">${esc(label)} (${esc(unit)})</text>${grid}${lines}</g>`;
}

export function rideChartSvg(s: RideSummary, series: RideSeries): string {
  const n = series.powerW.length;
  const height = TOP + 3 * (PANEL_H + GAP) + 30;
  const plotW = W - LEFT - RIGHT;
  const minutes = n / 60;
  const tickEvery = minutes > 90 ? 15 : minutes > 30 ? 10 : minutes > 10 ? 5 : 1;
  const ticks: string[] = [];
  for (let m = 0; m <= minutes; m += tickEvery) {
    const tx = LEFT + (n <= 1 ? 0 : ((m * 60) / (n - 1)) * plotW);
    ticks.push(`<text x="${tx.toFixed(1)}" y="${height - 12}" text-anchor="middle" font-size="11" fill="#666">${m} min</text>`);
  }
  const summary = [
    `Duration ${Math.floor(s.durationS / 60)}:${String(Math.round(s.durationS % 60)).padStart(2, '0')}`,
    `Distance ${(s.distanceM / 1000).toFixed(2)} km`,
    `Energy ${f(s.energyKj, 0, ' kJ')}`,
    `Power avg ${f(s.avgPowerW, 0, ' W')} · max ${f(s.maxPowerW, 0, ' W')}`,
    `Best 1 min ${f(s.best1minW, 0, ' W')} · 5 min ${f(s.best5minW, 0, ' W')}`,
    `Cadence avg ${f(s.avgCadenceRpm, 0, ' rpm')} · max ${f(s.maxCadenceRpm, 0, ' rpm')}`,
    `Heart rate avg ${f(s.avgHrBpm, 0, ' bpm')} · max ${f(s.maxHrBpm, 0, ' bpm')}`,
  ];
  const title = `Ride ${s.ride} · ${s.startedAt.replace('T', ' ').slice(0, 19)} UTC${s.classId ? ` · class ${s.classId}` : ''}`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${LEFT}" y="28" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="${LEFT}" y="52" font-size="13" class="summary">${esc(summary.slice(0, 4).join(' · '))}</text>`,
    `<text x="${LEFT}" y="72" font-size="13" class="summary">${esc(summary.slice(4).join(' · '))}</text>`,
    panel(series.powerW, TOP, 'Power', 'W', '#e07000', n),
    panel(series.cadenceRpm, TOP + PANEL_H + GAP, 'Cadence', 'rpm', '#1f6fd1', n),
    panel(series.hrBpm, TOP + 2 * (PANEL_H + GAP), 'Heart rate', 'bpm', '#c8283c', n),
    ...ticks,
    `</svg>`,
    '',
  ].join('\n');
}
