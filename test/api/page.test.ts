import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';
import { freePort } from '../helpers/broker.js';
import { cli, type Child } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

let agent: Child | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  agent?.proc.kill('SIGTERM');
  await agent?.exited;
});

// CI installs Debian's chromium (.ci/run); a developer machine without it skips this one file.
describe.skipIf(!existsSync(CHROMIUM))('diagnostics page in a real browser', () => {
  it('shows live power, cadence and heart rate from a simulated ride, with link and upload health', async () => {
    const port = await freePort();
    const dir = tempDir('page-');
    writeFileSync(
      `${dir}/config.json`,
      JSON.stringify({ dataDir: `${dir}/data`, device: { id: 'page-bike' }, mqtt: { enabled: false }, log: { records: 'none' } }),
    );
    agent = cli(['run', '--simulate', '-c', `${dir}/config.json`, '--http-port', String(port)]);
    await waitFor(() => agent!.json().some((l) => l.msg === 'diagnostics page and browser api listening'), 'page served', 15_000);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    // Cadence needs two crank revolutions after start before it is known.
    await page.waitForFunction(
      () => ['power-value', 'cadence-value', 'hr-value'].every((id) => Number(document.getElementById(id)?.textContent) > 0),
      undefined,
      { timeout: 15_000 },
    );
    await page.waitForFunction(() => document.getElementById('conn')?.textContent === 'live', undefined, { timeout: 10_000 });

    const read = () =>
      page.evaluate(() => ({
        power: Number(document.getElementById('power-value')!.textContent),
        cadence: Number(document.getElementById('cadence-value')!.textContent),
        hr: Number(document.getElementById('hr-value')!.textContent),
        link: document.getElementById('link')!.textContent ?? '',
        upload: document.getElementById('upload')!.textContent ?? '',
        overall: document.getElementById('overall')!.textContent ?? '',
        device: document.getElementById('device')!.textContent ?? '',
      }));
    const first = await read();
    // The demo ride warms up at about 40-120 W, 55-90 rpm.
    expect(first.power).toBeGreaterThan(20);
    expect(first.power).toBeLessThan(400);
    expect(first.cadence).toBeGreaterThan(40);
    expect(first.hr).toBeGreaterThan(60);
    await page.waitForFunction(() => document.getElementById('link')!.textContent.includes('state'), undefined, { timeout: 5000 });
    await page.waitForTimeout(3000);
    const later = await read();
    expect(later.link).toMatch(/stateopen/);
    expect(later.upload).toMatch(/statedisabled/);
    expect(later.overall).toBe('healthy');
    expect(later.device).toContain('page-bike');
    // Live: the figures move as the ride goes on.
    expect([later.power, later.cadence, later.hr]).not.toEqual([first.power, first.cadence, first.hr]);
    // The charts have been drawn: coloured pixels on each canvas.
    const drawn = await page.evaluate(() =>
      ['power-chart', 'cadence-chart', 'hr-chart'].map((id) => {
        const c = document.getElementById(id) as HTMLCanvasElement;
        const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
      }),
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}diagnostics-page.png`, fullPage: true });
    // A few seconds of a 60-second chart: a short line, but a line.
    for (const n of drawn) expect(n).toBeGreaterThan(50);
    expect(existsSync(`${ARTIFACTS}diagnostics-page.png`)).toBe(true);
    expect(consoleErrors).toEqual([]);
  });
});
