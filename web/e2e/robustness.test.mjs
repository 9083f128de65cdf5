// Robustness in the browser: a frame that cannot be decoded shows a clear message in its
// viewport while the rest of the series keeps working, and a 2,000-image series opens as a
// stack and scrolls end to end with the decoded-image cache held under its cap.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { artifacts, canvasStats, drawn, launchBrowser, signIn, startServer, waitFor, webDir } from './harness.mjs';

let server;
let browser;
const work = mkdtempSync(join(tmpdir(), 'radris-web-robust-'));

/** Generate a series with the test's pydicom script and STOW-RS it in batches. */
async function storeSeries(name, args) {
  const out = join(work, name);
  const made = spawnSync('python3', [join(webDir, 'e2e', 'make_series.py'), out, ...args], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const files = readdirSync(out).sort();
  for (let i = 0; i < files.length; i += 200) {
    const boundary = `radris-${Date.now()}-${i}`;
    const parts = [];
    for (const f of files.slice(i, i + 200)) {
      parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`));
      parts.push(readFileSync(join(out, f)));
      parts.push(Buffer.from('\r\n'));
    }
    parts.push(Buffer.from(`--${boundary}--\r\n`));
    const r = await fetch(`${server.base}/dicom-web/studies`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${server.token}`,
        'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        Accept: 'application/dicom+json',
      },
      body: Buffer.concat(parts),
    });
    assert.equal(r.status, 200, await r.text());
  }
  return files.length;
}

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  await storeSeries('damaged', ['--patient', 'ROBUST^Damaged', '--slices', '20', '--damaged', '10']);
  await storeSeries('long', ['--patient', 'ROBUST^Long', '--slices', '2000', '--rows', '128']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function open(page, name) {
  await page.getByLabel('Patient name').fill(name);
  await page.getByRole('button', { name: 'Search' }).click();
  // the row of this patient (the list before the search answers holds other studies)
  const [family, given] = name.split('^');
  await page.getByTestId('open-study').filter({ hasText: `${family.toUpperCase()}, ${given}` }).first().click();
}

test('a frame that fails to decode: a clear message, the rest keeps working', { timeout: 300_000 }, async () => {
  const page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await signIn(page, server);
  await open(page, 'ROBUST^Damaged');
  // the series opens on its middle slice, the damaged one
  const message = page.getByTestId('error-vp-0');
  await message.waitFor({ timeout: 60_000 }).catch(async (e) => {
    await page.screenshot({ path: join(artifacts, 'damaged-frame-failed.png') });
    throw e;
  });
  assert.match(await message.innerText(), /Image 11 could not be decoded/);
  assert.match(await message.innerText(), /other images remain available/);
  await page.screenshot({ path: join(artifacts, 'damaged-frame.png') });
  // the next slice is fine: the message goes, the image is drawn
  const box = await page.locator('[data-viewport-id="vp-0"]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 120);
  await waitFor(page, () => !document.querySelector('[data-testid="error-vp-0"]'));
  await page.waitForTimeout(300);
  assert.ok(drawn(await canvasStats(page, 'vp-0')), 'the neighbouring slice is drawn');
  assert.deepEqual(pageErrors, []);
});

test('a 2,000-image series: a stack, scrolled end to end, the cache under its cap', { timeout: 300_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  // a small budget for this workstation (16 MiB), so 2,000 images must be evicted as we go
  await context.addInitScript(() => localStorage.setItem('radris.cacheMiB', '16'));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await signIn(page, server);
  await open(page, 'ROBUST^Long');
  await waitFor(page, () => window.radris?.viewportState?.('vp-0')?.imageId, undefined, 120_000);
  assert.equal(await page.locator('[data-viewport-id] canvas').count(), 1, 'one stack viewport, no volume');
  const slider = page.getByLabel('Slice');
  for (const n of [1, 400, 800, 1200, 1600, 2000, 1000]) {
    await slider.fill(String(n));
    await waitFor(page, (i) => window.radris.viewportState('vp-0').imageIndex === i - 1, n, 60_000);
    const info = await page.evaluate(() => window.radris.cacheInfo());
    assert.ok(info.bytes <= info.max, `cache ${info.bytes} within ${info.max}`);
  }
  // wheel through a run of slices as a reader would
  const box = await page.locator('[data-viewport-id="vp-0"]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 60; i += 1) await page.mouse.wheel(0, 120);
  await waitFor(page, () => window.radris.viewportState('vp-0').imageIndex >= 1030, undefined, 60_000);
  const info = await page.evaluate(() => window.radris.cacheInfo());
  assert.equal(info.max, 16 * 1024 * 1024);
  assert.ok(info.bytes <= info.max);
  assert.match(await page.getByTestId('overlay-vp-0').innerText(), /\/2000/);
  assert.ok(drawn(await canvasStats(page, 'vp-0')));
  await page.screenshot({ path: join(artifacts, 'long-series.png') });
  // MPR of 2,000 × 128 × 128 × 2 bytes (62 MiB) cannot fit 16 MiB: refused with a reason,
  // the tab stays usable (browser rendering: the server would draw it without the memory)
  await page.getByTestId('render-mode').selectOption('browser');
  await page.getByTestId('mpr').click();
  const refusal = page.getByTestId('error-mpr-0');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /2000 images, 63 MiB\) is larger than this workstation's image memory \(16 MiB\)/);
  await page.getByRole('button', { name: 'Stack' }).click();
  await waitFor(page, () => window.radris.viewportState('vp-0')?.imageId);
  assert.deepEqual(pageErrors, []);
});

