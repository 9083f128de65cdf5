// The reading flow in a real browser against a real server: sign in, find the demo chest CT,
// see it drawn, scroll, measure a known phantom distance, reload and find the measurement
// again, MPR and 3D; then the same on a 390×844 touch screen. Timings go to
// e2e-artifacts/timings.json, screenshots beside them.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, canvasGrey, canvasStats, drawn, launchBrowser, meanAbsDiff, mergeTimings, signIn, startServer, waitDrawn, waitFor, touch, drag } from './harness.mjs';

// The demo chest CT (radris-dicom synth): 512×512, field of view 380 mm, first pixel centre at
// x = y = -190 mm; the lungs are centred at x = ±0.38 of the half field, y = 0 → their centres
// are 0.76 × 190 = 144.4 mm apart.
const FOV = 380;
const LUNG_X = 0.38 * (FOV / 2);
const LUNG_DISTANCE_MM = 2 * LUNG_X;
const timings = {};
let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  mergeTimings(timings);
  await browser?.close();
  await server?.stop();
});

async function openChestCt(page) {
  await page.getByLabel('Patient name').fill('Lindqvist');
  await page.getByRole('button', { name: 'Search' }).click();
  const open = page.getByTestId('open-study').filter({ hasText: 'LINDQVIST' });
  await open.first().waitFor();
  // a user reads the list before opening: the viewer code has loaded meanwhile
  await page.waitForFunction(() => window.radris.metrics.viewerWarm, undefined, { timeout: 60_000 });
  const clicked = await page.evaluate(() => performance.now());
  await open.first().click();
  await waitFor(page, () => window.radris?.metrics.firstImageAt !== undefined, undefined, 60_000);
  const m = await page.evaluate(() => ({ ...window.radris.metrics }));
  return { clicked, metrics: m, firstImageMs: m.firstImageAt - clicked };
}

function lengthValue(text) {
  const m = /Length:\s*([0-9.]+)\s*mm/.exec(text);
  return m ? Number(m[1]) : NaN;
}

test('fresh open timing: first image and MPR-ready volume of the 300-slice CT', { timeout: 300_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  await signIn(page, server);
  const opened = await openChestCt(page);
  timings.first_image_ms = Math.round(opened.firstImageMs);
  // progressive: the first image was drawn long before its series had arrived
  const framesAtFirstImage = await page.evaluate(
    () => performance.getEntriesByType('resource').filter((e) => e.name.includes('/frames/') && e.responseEnd <= window.radris.metrics.firstImageAt).length,
  );
  timings.frames_received_at_first_image = framesAtFirstImage;
  assert.ok(framesAtFirstImage < 300 / 4, `${framesAtFirstImage} frames before the first image`);
  // a fresh page: nothing of the volume is cached in the browser (WebGL MPR, chosen: without
  // a GPU the server draws MPR by default, see thin.test.mjs)
  await page.getByTestId('render-mode').selectOption('browser');
  const clicked = await page.evaluate(() => performance.now());
  await page.getByTestId('mpr').click();
  const ready = await page.waitForFunction(() => window.radris.metrics.volumeReadyAt, undefined, { timeout: 120_000 }).then((h) => h.jsonValue());
  timings.mpr_volume_ready_ms = Math.round(ready - clicked);
  // and drawn in the sagittal plane
  await waitDrawn(page, 'mpr-1');
  timings.mpr_sagittal_drawn_ms = Math.round((await page.evaluate(() => performance.now())) - clicked);
  timings.mpr_volume_ready_ms_from_open = Math.round(ready - opened.clicked);
});

test('desktop: sign in, open, scroll, measure, reload, MPR, 3D', { timeout: 600_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await signIn(page, server);
  assert.match(await page.getByTestId('who').innerText(), /demo\s*@default/);

  const opened = await openChestCt(page);
  timings.desktop_first_image_ms = Math.round(opened.firstImageMs);
  await page.screenshot({ path: join(artifacts, 'desktop-open.png') });

  // the hanging protocol puts the baseline a year earlier beside it: both drawn
  await waitFor(page, () => document.querySelectorAll('[data-viewport-id] canvas').length === 2);
  await waitFor(page, () => window.radris.viewportState('vp-1')?.imageId);
  await page.waitForTimeout(300);
  const first = await canvasStats(page, 'vp-0');
  assert.ok(drawn(first), `current image drawn: ${JSON.stringify(first)}`);
  assert.ok(drawn(await canvasStats(page, 'vp-1')), 'prior image drawn');
  assert.match(await page.locator('.prior-tag').innerText(), /PRIOR 2025-09-10/);

  // scroll the current with the mouse wheel: another slice, and the prior follows by position
  const before = await page.evaluate(() => window.radris.viewportState('vp-0'));
  const priorBefore = await page.evaluate(() => window.radris.viewportState('vp-1'));
  const box = await page.locator('[data-viewport-id="vp-0"]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 30; i += 1) await page.mouse.wheel(0, 120);
  await waitFor(page, (i) => window.radris.viewportState('vp-0').imageIndex !== i, before.imageIndex);
  await waitFor(page, (i) => window.radris.viewportState('vp-1').imageIndex !== i, priorBefore.imageIndex);
  // 1 mm current slices, 3 mm prior slices over the same anatomy: the prior settles at the same z
  await waitFor(page, () => {
    const [c, p] = [window.radris.viewportState('vp-0'), window.radris.viewportState('vp-1')];
    return Math.abs(c.focalPoint[2] - p.focalPoint[2]) <= 1.5;
  }, undefined, 30_000);
  const afterScroll = await page.evaluate(() => window.radris.viewportState('vp-0'));
  const priorAfter = await page.evaluate(() => window.radris.viewportState('vp-1'));
  assert.notEqual(afterScroll.imageIndex, before.imageIndex);
  assert.notEqual(priorAfter.imageIndex, priorBefore.imageIndex);
  assert.match(await page.getByTestId('overlay-vp-0').innerText(), new RegExp(`Im ${afterScroll.imageIndex + 1}/300`));
  // a window preset on the current applies to the prior too
  await page.locator('button[data-preset="mediastinum"]').click();
  await waitFor(page, () => {
    const v = window.radris.viewportState('vp-1').voi;
    return v && Math.round(v.upper - v.lower) === 349;
  });
  await page.locator('button[data-preset="lung"]').click();

  // a length from one lung centre to the other, on the current slice
  await page.locator('button[data-tool="Length"]').click();
  const z = afterScroll.focalPoint[2];
  const [a, b] = await page.evaluate(
    ([x, zz]) => [window.radris.toPage('vp-0', [-x, 0, zz]), window.radris.toPage('vp-0', [x, 0, zz])],
    [LUNG_X, z],
  );
  const mmPerPx = LUNG_DISTANCE_MM / Math.hypot(b[0] - a[0], b[1] - a[1]);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  for (let i = 1; i <= 10; i += 1) await page.mouse.move(a[0] + ((b[0] - a[0]) * i) / 10, a[1] + ((b[1] - a[1]) * i) / 10);
  await page.mouse.up();
  const list = page.getByTestId('measurements');
  await list.getByText(/Length:/).waitFor();
  const measured = lengthValue(await list.innerText());
  timings.length_measured_mm = measured;
  timings.length_expected_mm = LUNG_DISTANCE_MM;
  // the mouse lands on whole screen pixels: allow two pixels' worth
  assert.ok(Math.abs(measured - LUNG_DISTANCE_MM) <= Math.max(1, 2 * mmPerPx), `measured ${measured} mm, expected ${LUNG_DISTANCE_MM} mm (±${(2 * mmPerPx).toFixed(2)})`);

  // an elliptical ROI inside the left lung: the phantom's lung is -850 HU with uniform noise
  // 20 HU wide (±10: SD 20/√12 = 5.8)
  await page.locator('button[data-tool="EllipticalROI"]').click();
  const [e1, e2] = await page.evaluate(
    ([x, zz]) => [window.radris.toPage('vp-0', [-x - 12, -12, zz]), window.radris.toPage('vp-0', [-x + 12, 12, zz])],
    [LUNG_X, z],
  );
  await page.mouse.move(e1[0], e1[1]);
  await page.mouse.down();
  for (let i = 1; i <= 8; i += 1) await page.mouse.move(e1[0] + ((e2[0] - e1[0]) * i) / 8, e1[1] + ((e2[1] - e1[1]) * i) / 8);
  await page.mouse.up();
  await list.getByText(/Ellipse:/).waitFor();
  const roi = /Ellipse:\s*mean (-?[0-9.]+) HU, SD ([0-9.]+), area ([0-9]+)/.exec(await list.innerText());
  assert.ok(roi, await list.innerText());
  timings.roi_mean_hu = Number(roi[1]);
  timings.roi_sd_hu = Number(roi[2]);
  assert.ok(Math.abs(Number(roi[1]) + 850) < 5, `ROI mean ${roi[1]} HU`);
  assert.ok(Math.abs(Number(roi[2]) - 20 / Math.sqrt(12)) < 1, `ROI SD ${roi[2]} HU`);
  assert.ok(Number(roi[3]) > 50, `ROI area ${roi[3]} mm²`);

  // invert, rotate and flip act on the active viewport; reset undoes them
  await page.getByTitle('Invert (I)').click();
  await page.getByTitle('Rotate 90°').click();
  const turned = await page.evaluate(() => window.radris.viewportState('vp-0'));
  assert.equal(turned.invert, true);
  assert.equal(turned.rotation % 360, 90);
  await page.getByTitle('Flip horizontally').click();
  const flipped = await page.evaluate(() => window.radris.viewportState('vp-0'));
  assert.equal(flipped.flipHorizontal, true);
  await page.getByTitle('Reset view').click();
  const reset = await page.evaluate(() => window.radris.viewportState('vp-0'));
  assert.equal(reset.rotation % 360, 0);
  assert.equal(reset.flipHorizontal, false);
  assert.equal(reset.invert, false);
  await page.locator('button[data-preset="lung"]').click();

  // cine plays through the slices by itself, and stops
  const beforeCine = (await page.evaluate(() => window.radris.viewportState('vp-0'))).imageIndex;
  await page.getByTitle('Cine').click();
  await waitFor(page, (i) => window.radris.viewportState('vp-0').imageIndex !== i, beforeCine, 30_000);
  await page.getByTitle('Cine').click();
  const stopped = (await page.evaluate(() => window.radris.viewportState('vp-0'))).imageIndex;
  await page.waitForTimeout(500);
  assert.equal((await page.evaluate(() => window.radris.viewportState('vp-0'))).imageIndex, stopped);
  // back to the measured slice for the key image
  await page.getByTestId('measurements').getByRole('button', { name: /Length:/ }).click();
  await waitFor(page, (i) => window.radris.viewportState('vp-0').imageIndex === i, afterScroll.imageIndex);

  // key image on this slice
  await page.getByTestId('key-image').click();
  await page.getByTestId('key-images').getByText('★ image').waitFor();
  await waitFor(page, () => document.querySelector('[data-testid=save-state]')?.textContent === 'Saved');
  await page.screenshot({ path: join(artifacts, 'desktop-measured.png') });

  // reload: the session cookie keeps us signed in, the measurement and key image come back
  await page.reload();
  await page.getByTestId('measurements').getByText(/Length:/).waitFor({ timeout: 60_000 });
  assert.equal(lengthValue(await page.getByTestId('measurements').innerText()), measured);
  await page.getByTestId('measurements').getByText(/Ellipse: mean/).waitFor();
  await page.getByTestId('key-images').getByText('★ image').waitFor();
  // and it is drawn again: jump to its slice, the annotation layer has its line
  await page.getByTestId('measurements').getByRole('button', { name: /Length:/ }).click();
  await waitFor(page, () => document.querySelector('[data-viewport-id="vp-0"] svg [data-annotation-uid], [data-viewport-id="vp-0"] svg line'));
  await page.screenshot({ path: join(artifacts, 'desktop-reloaded.png') });

  // layouts: 2×2 keeps current and prior in the first cells
  await page.getByTitle('Layout 2×2').click();
  await waitFor(page, () => document.querySelectorAll('.grid .cell').length === 2 && getComputedStyle(document.querySelector('.grid')).gridTemplateColumns.split(' ').length === 2);
  await page.getByTitle('Layout 1×1').click();
  await waitFor(page, () => document.querySelectorAll('.grid .cell').length === 1);
  await waitDrawn(page, 'vp-0');

  // MPR: three planes from the volume, each drawn, crosshairs linking them (WebGL MPR, chosen:
  // without a GPU the server draws MPR by default, see thin.test.mjs)
  await page.getByTestId('render-mode').selectOption('browser');
  const mprClicked = await page.evaluate(() => {
    window.radris.metrics.volumeReadyAt = undefined;
    return performance.now();
  });
  await page.getByTestId('mpr').click();
  await waitFor(page, () => document.querySelectorAll('[data-kind="sagittal"] canvas, [data-kind="coronal"] canvas, [data-kind="axial"] canvas').length === 3);
  const volumeReady = await page
    .waitForFunction(() => window.radris.metrics.volumeReadyAt, undefined, { timeout: 120_000 })
    .then((h) => h.jsonValue());
  const m = await page.evaluate(() => ({ ...window.radris.metrics }));
  timings.desktop_mpr_ready_ms_after_click = Math.round(volumeReady - mprClicked);
  // each plane drawn (without a GPU the volume is attached once complete: allow a moment)
  for (const id of ['mpr-0', 'mpr-1', 'mpr-2']) await waitDrawn(page, id);
  assert.ok(m.volumeReadyAt > 0);
  // a 30 mm MIP slab: the viewports say so, and the picture changes (noise maxima brighten it)
  const thin = await canvasGrey(page, 'mpr-0');
  await page.getByTestId('slab-mode').selectOption('mip');
  await page.getByLabel('Slab thickness (mm)').fill('30');
  await waitFor(page, () => {
    const s = window.radris.viewportState('mpr-0');
    return s.blendMode === 1 && Math.abs(s.slabThickness - 30) < 0.01;
  });
  await page.waitForTimeout(1500);
  const mip = await canvasGrey(page, 'mpr-0');
  assert.ok(meanAbsDiff(thin, mip) > 0.5, `MIP differs from the thin slice: ${meanAbsDiff(thin, mip)}`);
  await page.screenshot({ path: join(artifacts, 'desktop-mpr.png') });

  // 3D volume rendering (software WebGL: judged by the picture, not the frame rate)
  await page.getByTestId('slab-mode').selectOption('none');
  await page.getByTestId('vr').click({ timeout: 120_000 });
  await waitFor(page, () => document.querySelector('[data-kind="volume3d"] canvas'));
  await page.waitForFunction(
    () => {
      const c = document.querySelector('[data-kind="volume3d"] canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 0; i < d.length; i += 16) if (d[i] + d[i + 1] + d[i + 2] > 60) lit += 1;
      return lit > 500;
    },
    undefined,
    { timeout: 180_000, polling: 500 },
  );
  await page.screenshot({ path: join(artifacts, 'desktop-3d.png') });
  assert.deepEqual(consoleErrors, []);
});

test('phone: 390×844 touch flow', { timeout: 300_000 }, async (t) => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  await signIn(page, server);
  await openChestCt(page);
  await waitFor(page, () => document.querySelectorAll('[data-viewport-id] canvas').length === 1);
  const s = await canvasStats(page, 'vp-0');
  assert.ok(drawn(s), `drawn on the phone: ${JSON.stringify(s)}`);
  await page.screenshot({ path: join(artifacts, 'phone-open.png') });

  const cdp = await context.newCDPSession(page);
  const box = await page.locator('[data-viewport-id="vp-0"]').boundingBox();
  const cx = box.x + box.width / 2;
  const cy = box.y + box.height / 2;
  const state = () => page.evaluate(() => window.radris.viewportState('vp-0'));

  // one finger: window/level
  const s0 = await state();
  await drag(cdp, [[cx, cy]], [[cx + 60, cy + 40]]);
  await page.waitForTimeout(300);
  const s1 = await state();
  assert.notDeepEqual(s1.voi, s0.voi, 'one-finger drag changes the window');

  // two fingers apart: zoom in
  await drag(cdp, [[cx - 30, cy], [cx + 30, cy]], [[cx - 110, cy], [cx + 110, cy]]);
  await page.waitForTimeout(300);
  const s2 = await state();
  assert.ok(s2.zoom > s1.zoom * 1.1, `pinch zooms: ${s1.zoom} → ${s2.zoom}`);

  // scroll tool, one finger down: other slices
  await page.locator('button[data-tool="StackScroll"]').tap();
  await drag(cdp, [[cx, cy - 100]], [[cx, cy + 100]], 12);
  await page.waitForTimeout(300);
  const s3 = await state();
  assert.notEqual(s3.imageIndex, s2.imageIndex, 'touch scroll moves through the stack');

  // the measurement made on the desktop is listed in the phone's panel too
  await page.getByRole('button', { name: 'Series' }).tap();
  await page.getByTestId('measurements').getByText(/Length:/).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(artifacts, 'phone-touch.png') });
});
