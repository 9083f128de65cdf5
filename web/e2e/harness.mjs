// Browser-test harness: starts a real `radris serve --demo` on loopback (its own data
// directory, free ports) serving the built web app, and Debian's Chromium through
// playwright-core (no browser download). Screenshots and timings go to web/e2e-artifacts/.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { after, before } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
export const webDir = resolve(here, '..');
export const repo = resolve(webDir, '..');
export const artifacts = join(webDir, 'e2e-artifacts');
mkdirSync(artifacts, { recursive: true });

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.unref();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export function radrisBin() {
  if (process.env.RADRIS_BIN) return process.env.RADRIS_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  return join(target, 'debug', 'radris');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A running server with the demo data set; `stop()` ends it and removes its data. */
export async function startServer() {
  const dataDir = mkdtempSync(join(tmpdir(), 'radris-web-e2e-'));
  const http = await freePort();
  const dicom = await freePort();
  const log = [];
  const proc = spawn(
    radrisBin(),
    [
      'serve',
      '--demo',
      '--data-dir',
      dataDir,
      '--http-listen',
      `127.0.0.1:${http}`,
      '--dicom-listen',
      `127.0.0.1:${dicom}`,
      '--web-dir',
      join(webDir, 'dist'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } },
  );
  const keep = (b) => {
    log.push(b.toString());
    if (log.length > 400) log.shift();
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const base = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`radris exited early:\n${log.join('')}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok && existsSync(join(dataDir, 'demo-password'))) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`radris not ready:\n${log.join('')}`);
    await sleep(250);
  }
  const password = readFileSync(join(dataDir, 'demo-password'), 'utf8').trim();
  const token = readFileSync(join(dataDir, 'demo-token'), 'utf8').trim();
  return {
    base,
    dataDir,
    password,
    token,
    log: () => log.join(''),
    async stop() {
      proc.kill('SIGTERM');
      await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(20_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * One `radris serve --demo` and one browser for a test file: started before its tests,
 * closed after them (`beforeClose` runs first, e.g. to write timings). Read `env.server` and
 * `env.browser` inside the tests.
 */
export function useDemoServer(beforeClose) {
  const env = {};
  before(async () => {
    env.server = await startServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await beforeClose?.();
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--use-gl=angle',
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
}

export async function signIn(page, server, user = 'demo') {
  await page.goto(server.base + '/');
  await page.getByLabel('Organisation').fill('default');
  await page.getByLabel('User').fill(user);
  await page.getByLabel('Password').fill(server.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
}

/** Pixel statistics of a viewport's canvas: is an image really drawn? */
export async function canvasStats(page, viewportId) {
  return page.evaluate((id) => {
    const canvas = document.querySelector(`[data-viewport-id="${id}"] canvas`);
    if (!canvas) return null;
    const ctx = canvas.getContext('2d');
    const { width, height } = canvas;
    const data = ctx.getImageData(0, 0, width, height).data;
    let sum = 0;
    let sum2 = 0;
    const levels = new Set();
    const n = width * height;
    for (let i = 0; i < data.length; i += 4) {
      const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
      sum += v;
      sum2 += v * v;
      levels.add(data[i]);
    }
    const mean = sum / n;
    return { width, height, mean, sd: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), levels: levels.size };
  }, viewportId);
}

export function drawn(stats) {
  return !!stats && stats.width > 0 && stats.sd > 5 && stats.levels > 16 && stats.mean > 2;
}

export async function waitFor(page, fn, arg, timeout = 60_000) {
  return page.waitForFunction(fn, arg, { timeout, polling: 100 });
}

export function writeArtifact(name, value) {
  writeFileSync(join(artifacts, name), typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

/** One touch event through CDP: `points` are [x, y] page coordinates, one per finger. */
export async function touch(cdp, type, points) {
  await cdp.send('Input.dispatchTouchEvent', {
    type,
    touchPoints: points.map(([x, y], id) => ({ x, y, id, radiusX: 2, radiusY: 2, force: 1 })),
  });
}

/** A touch drag of every finger from `from[i]` to `to[i]` in `steps` moves. */
export async function drag(cdp, from, to, steps = 8) {
  const n = from.length;
  await touch(cdp, 'touchStart', from);
  for (let s = 1; s <= steps; s += 1) {
    const pts = [];
    for (let i = 0; i < n; i += 1) pts.push([from[i][0] + ((to[i][0] - from[i][0]) * s) / steps, from[i][1] + ((to[i][1] - from[i][1]) * s) / steps]);
    await touch(cdp, 'touchMove', pts);
  }
  await touch(cdp, 'touchEnd', []);
}

/** Merge `timings` into e2e-artifacts/timings.json (each test file writes its own keys). */
export function mergeTimings(timings) {
  const file = join(artifacts, 'timings.json');
  let old = {};
  try {
    if (existsSync(file)) old = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    old = {};
  }
  writeArtifact('timings.json', { ...old, ...timings });
}

/** A viewport canvas's grey levels, every 4th pixel, for comparing two renderings. */
export async function canvasGrey(page, viewportId) {
  return page.evaluate((id) => {
    const c = document.querySelector(`[data-viewport-id="${id}"] canvas`);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const out = [];
    for (let i = 0; i < d.length; i += 16) out.push(d[i]);
    return out;
  }, viewportId);
}

export function meanAbsDiff(a, b) {
  const n = Math.min(a.length, b.length);
  let s = 0;
  for (let i = 0; i < n; i += 1) s += Math.abs(a[i] - b[i]);
  return n ? s / n : 0;
}

/** Wait until a viewport's canvas shows an image (see `drawn`). */
export async function waitDrawn(page, viewportId, timeout = 60_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const s = await canvasStats(page, viewportId);
    if (drawn(s)) return s;
    if (Date.now() > deadline) throw new Error(`${viewportId} not drawn: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
