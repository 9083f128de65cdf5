// The thin-client viewer in a real browser against a real server: MPR and 3D drawn by
// `/api/v1/render` (the default where WebGL runs in software, as in this headless Chromium).
// Open the 300-slice demo chest CT, click MPR: three planes drawn, a click moves the other
// planes, the wheel steps, a right drag windows, a MIP slab, 3D drawn and turned by dragging, a
// failing plane says why while the others keep working; then the same with touch on a
// 390×844 phone. `serverMprReadyMs` (fresh server, then with the volume cached) and the 3D
// times are merged into e2e-artifacts/timings.json; screenshots beside it.

import { test } from 'node:test';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { artifacts, canvasGrey, canvasStats, drawn, meanAbsDiff, signIn, mergeTimings, useDemoServer, waitDrawn, waitFor, touch, drag } from './harness.mjs';

const timings = {};
const env = useDemoServer(() => mergeTimings(timings));

const PLANES = ['axial', 'sagittal', 'coronal'];

async function openChestCt(page) {
  await page.getByLabel('Patient name').fill('Lindqvist');
  await page.getByRole('button', { name: 'Search' }).click();
  const open = page.getByTestId('open-study').filter({ hasText: 'LINDQVIST' });
  await open.first().waitFor();
  await page.waitForFunction(() => window.radris.metrics.viewerWarm, undefined, { timeout: 60_000 });
  await open.first().click();
  await waitFor(page, () => window.radris?.metrics.firstImageAt !== undefined, undefined, 60_000);
}

const state = (page) => page.evaluate(() => window.radris.serverMprState());

/** The view once the last input has been handled (touch input lands after CDP returns). */
async function viewAfterInput(page) {
  let last = '';
  for (let i = 0; i < 40; i += 1) {
    const s = await state(page);
    const now = JSON.stringify([s.point, s.window, s.slab, s.vr]);
    if (now === last) return s;
    last = now;
    await page.waitForTimeout(150);
  }
  throw new Error('the view keeps changing');
}

/**
 * Tap `selector` until `done` holds in the page. Chromium drops a tap that comes soon after
 * another touch gesture (seen after both one- and two-finger drags); a hand taps again.
 */
async function tapUntil(page, selector, done) {
  for (let i = 0; i < 4; i += 1) {
    await page.locator(selector).tap();
    const ok = await waitFor(page, done, selector, 2_500).then(() => true, () => false);
    if (ok) return;
    await page.waitForTimeout(500);
  }
  throw new Error(`${selector}: four taps went unanswered`);
}

const paneShown = (sel) => document.querySelector(sel)?.getAttribute('aria-selected') === 'true';

/** Open server MPR; resolves with its timings once three planes and the 3D picture are drawn. */
async function openServerMpr(page, tap = false) {
  assert.equal(await page.getByTestId('render-mode').inputValue(), 'server', 'software WebGL: the server renders by default');
  if (tap) await page.getByTestId('mpr').tap();
  else await page.getByTestId('mpr').click();
  await page.getByTestId('server-mpr').waitFor();
  const mpr = await page.waitForFunction(() => window.radris.serverMprReadyMs, undefined, { timeout: 120_000, polling: 50 }).then((h) => h.jsonValue());
  for (const p of PLANES) assert.ok(drawn(await canvasStats(page, `srv-${p}`)), `${p} drawn: ${JSON.stringify(await canvasStats(page, `srv-${p}`))}`);
  const vr = await page.waitForFunction(() => window.radris.server3dReadyMs, undefined, { timeout: 120_000, polling: 50 }).then((h) => h.jsonValue());
  await waitDrawn(page, 'srv-3d');
  const volume = await page.evaluate(() => window.radris.serverVolumeMs);
  return { mpr, vr, volume };
}

/** Wait until a pane has drawn a picture whose URL passes `re` and differs from `before`. */
async function waitPicture(page, pane, re, before) {
  await waitFor(
    page,
    ([p, r, b]) => {
      const s = window.radris.serverMprState()?.panes[p];
      return s && s.url && s.url !== b && new RegExp(r).test(s.url) && !s.error;
    },
    [pane, re.source, before ?? null],
    30_000,
  ).catch(async (e) => {
    throw new Error(`${pane}: no picture matching ${re} (${e.message}); state ${JSON.stringify(await state(page), null, 1)}`);
  });
  return (await state(page)).panes[pane].url;
}

/** The picture asked for last has been drawn: nothing newer for a moment. */
async function settled(page, pane) {
  let last = '';
  for (let i = 0; i < 40; i += 1) {
    const s = (await state(page)).panes[pane];
    const now = `${s.url}#${s.draws}`;
    if (now === last) return s;
    last = now;
    await page.waitForTimeout(250);
  }
  throw new Error(`${pane} keeps changing`);
}

const problem = (detail) => ({
  status: 422,
  contentType: 'application/problem+json',
  body: JSON.stringify({ type: 'about:blank', title: 'Unprocessable Entity', status: 422, detail }),
});

test('desktop: server MPR and 3D of the 300-slice CT, fresh then cached', { timeout: 600_000 }, async (t) => {
  const context = await env.browser.newContext({ viewport: { width: 1400, height: 900 } });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await signIn(page, env.server);
  await openChestCt(page);

  // a fresh server: the volume is built by this first request
  const fresh = await openServerMpr(page);
  timings.server_mpr_ready_ms_fresh = fresh.mpr;
  timings.server_3d_ready_ms_fresh = fresh.vr;
  timings.server_volume_ms_fresh = fresh.volume;
  // no Cornerstone volume viewports were made
  assert.equal(await page.locator('[data-viewport-id^="mpr-"]').count(), 0);
  await page.screenshot({ path: join(artifacts, 'thin-desktop-mpr.png') });

  // each picture fills its pane's device pixels
  const s0 = await state(page);
  const box = await page.locator('[data-viewport-id="srv-axial"]').boundingBox();
  assert.equal(s0.panes.axial.width, Math.round(box.width));
  assert.equal(s0.panes.axial.height, Math.round(box.height));

  // a click in the axial plane: the point moves there, the sagittal and coronal planes follow
  const z = s0.point[2];
  const target = [-60, 30, z];
  const at = await page.evaluate((p) => window.radris.serverMprToPage('axial', p), target);
  await page.mouse.click(at[0], at[1]);
  const s1 = await viewAfterInput(page);
  const mmPerPx = 380 / box.width;
  for (let i = 0; i < 3; i += 1) assert.ok(Math.abs(s1.point[i] - target[i]) <= 1.5 * mmPerPx, `clicked ${JSON.stringify(s1.point)}, wanted ${JSON.stringify(target)}`);
  assert.notEqual(s1.positions.sagittal, s0.positions.sagittal);
  assert.notEqual(s1.positions.coronal, s0.positions.coronal);
  assert.equal(s1.positions.axial, s0.positions.axial);
  await waitPicture(page, 'sagittal', new RegExp(`position=${s1.positions.sagittal}&`), s0.panes.sagittal.url);
  await waitPicture(page, 'coronal', new RegExp(`position=${s1.positions.coronal}&`), s0.panes.coronal.url);
  // the crosshair of the axial pane goes through the clicked point
  const lines = await page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="srv-crosshair-axial"] line')].map((l) => ({ plane: l.dataset.plane, x1: +l.getAttribute('x1'), y1: +l.getAttribute('y1') })),
  );
  assert.deepEqual(lines.map((l) => l.plane).sort(), ['coronal', 'sagittal']);

  // the wheel steps the axial plane (down = inferior), and the picture changes
  await settled(page, 'axial');
  const axialBefore = await canvasGrey(page, 'srv-axial');
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 60; i += 1) await page.mouse.wheel(0, 120);
  await waitFor(page, (p) => window.radris.serverMprState().positions.axial <= p - 50, s1.positions.axial);
  const s2 = await viewAfterInput(page);
  await waitPicture(page, 'axial', new RegExp(`position=${s2.positions.axial}&`), s1.panes.axial.url);
  await settled(page, 'axial');
  const wheeled = await canvasGrey(page, 'srv-axial');
  timings.server_wheel_diff = Math.round(meanAbsDiff(axialBefore, wheeled) * 100) / 100;
  assert.ok(meanAbsDiff(axialBefore, wheeled) > 0.5, `another axial picture after the wheel: ${meanAbsDiff(axialBefore, wheeled)}`);

  // a right drag windows every plane
  const wlBefore = await page.getByTestId('srv-wl-axial').innerText();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down({ button: 'right' });
  for (let i = 1; i <= 10; i += 1) await page.mouse.move(box.x + box.width / 2 - 40 * i, box.y + box.height / 2 + 8 * i);
  await page.mouse.up({ button: 'right' });
  const s3 = await viewAfterInput(page);
  assert.match(s3.window ?? '', /^-?[0-9.]+,[0-9.]+$/);
  await waitPicture(page, 'axial', new RegExp(`window=${encodeURIComponent(s3.window)}`));
  await waitPicture(page, 'coronal', new RegExp(`window=${encodeURIComponent(s3.window)}`));
  await settled(page, 'axial');
  assert.notEqual(await page.getByTestId('srv-wl-axial').innerText(), wlBefore);
  const windowed = await canvasGrey(page, 'srv-axial');
  assert.ok(meanAbsDiff(wheeled, windowed) > 2, `a narrower window changes the picture: ${meanAbsDiff(wheeled, windowed)}`);
  // a preset sets it back by name
  await page.locator('button[data-srv-preset="lung"]').click();
  await waitPicture(page, 'axial', /window=lung/);
  await settled(page, 'axial');
  const thin = await canvasGrey(page, 'srv-axial');

  // a 20 mm MIP slab: the slab endpoint, and a brighter picture (noise maxima, nodules)
  await page.getByTestId('srv-slab-mode').selectOption('mip');
  await page.getByTestId('srv-slab-thickness').fill('20');
  await waitPicture(page, 'axial', /\/slab\?.*slab=mip&thickness=20/);
  await waitPicture(page, 'sagittal', /\/slab\?.*slab=mip&thickness=20/);
  await settled(page, 'axial');
  const mip = await canvasGrey(page, 'srv-axial');
  assert.ok(meanAbsDiff(thin, mip) > 0.5, `MIP differs from the thin plane: ${meanAbsDiff(thin, mip)}`);
  await page.screenshot({ path: join(artifacts, 'thin-desktop-slab.png') });
  await page.getByTestId('srv-slab-mode').selectOption('none');
  // the arrow keys step the plane last used (the axial)
  await page.evaluate(() => document.activeElement?.blur());
  const beforeKeys = await viewAfterInput(page);
  for (let i = 0; i < 5; i += 1) await page.keyboard.press('ArrowUp');
  const afterKeys = await viewAfterInput(page);
  assert.equal(Math.round(afterKeys.positions.axial - beforeKeys.positions.axial), 5);
  assert.equal(afterKeys.positions.sagittal, beforeKeys.positions.sagittal);

  // 3D: a drag turns it, small pictures while dragging, a full one on release
  await settled(page, '3d');
  const vrBefore = await canvasGrey(page, 'srv-3d');
  const vrRequests = [];
  page.on('request', (r) => r.url().includes('/vr?') && vrRequests.push(r.url()));
  const vbox = await page.locator('[data-viewport-id="srv-3d"]').boundingBox();
  const [cx, cy] = [vbox.x + vbox.width / 2, vbox.y + vbox.height / 2];
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  for (let i = 1; i <= 12; i += 1) {
    await page.mouse.move(cx - 10 * i, cy + 2 * i);
    await page.waitForTimeout(40);
  }
  await page.mouse.up();
  const s4 = await viewAfterInput(page);
  assert.equal(s4.vr.azimuth, 60);
  assert.equal(s4.vr.elevation, 12);
  await waitPicture(page, '3d', /azimuth=60&elevation=12&size=[0-9]+%2C[0-9]+$/);
  await settled(page, '3d');
  const turned = await canvasGrey(page, 'srv-3d');
  assert.ok(meanAbsDiff(vrBefore, turned) > 1, `the 3D picture turned: ${meanAbsDiff(vrBefore, turned)}`);
  assert.ok(vrRequests.some((u) => u.includes('format=jpeg')), `small JPEGs while dragging: ${vrRequests.join(' ')}`);
  await page.screenshot({ path: join(artifacts, 'thin-desktop-3d.png') });

  // a plane the server refuses: its pane says why, the others keep working
  const broken = (url) => url.pathname.endsWith('/mpr') && url.searchParams.get('plane') === 'coronal';
  await page.route(broken, (route) => route.fulfill(problem('the series cannot be shown as a volume: test refusal')));
  const s5 = await state(page);
  const at2 = await page.evaluate(([p]) => window.radris.serverMprToPage('axial', p), [[40, -20, s5.point[2]]]);
  await page.mouse.click(at2[0], at2[1]);
  await page.getByTestId('srv-error-coronal').waitFor();
  assert.match(await page.getByTestId('srv-error-coronal').innerText(), /coronal plane.*test refusal/s);
  const s6 = await viewAfterInput(page);
  await waitPicture(page, 'sagittal', new RegExp(`position=${s6.positions.sagittal}&`), s5.panes.sagittal.url);
  assert.equal(await page.getByTestId('srv-error-sagittal').count(), 0);
  // and it recovers with the next change
  await page.unroute(broken);
  await page.mouse.click(at2[0] + 10, at2[1] + 10);
  const s7 = await viewAfterInput(page);
  await waitPicture(page, 'coronal', new RegExp(`position=${s7.positions.coronal}&`));
  await page.getByTestId('srv-error-coronal').waitFor({ state: 'detached' });
  assert.ok(drawn(await canvasStats(page, 'srv-coronal')));

  // a second open of the same series: the server has the volume cached
  await page.getByRole('button', { name: 'Stack' }).click();
  await page.getByTestId('server-mpr').waitFor({ state: 'detached' });
  const cached = await openServerMpr(page);
  timings.server_mpr_ready_ms_cached = cached.mpr;
  timings.server_3d_ready_ms_cached = cached.vr;
  timings.server_volume_ms_cached = cached.volume;
  assert.ok(cached.volume < fresh.volume, `cached volume ${cached.volume} ms, fresh ${fresh.volume} ms`);

  // the 3D button opens the same view; browser rendering brings Cornerstone back
  await page.getByTestId('vr').click();
  await page.waitForFunction(() => window.radris.server3dReadyMs, undefined, { timeout: 60_000 });
  await page.getByTestId('render-mode').selectOption('browser');
  await page.getByTestId('server-mpr').waitFor({ state: 'detached' });
  await waitFor(page, () => document.querySelector('[data-kind="volume3d"] canvas'));
  assert.deepEqual(pageErrors, []);
});

test('phone: 390×844 touch, one pane at a time', { timeout: 300_000 }, async (t) => {
  const context = await env.browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await signIn(page, env.server);
  await openChestCt(page);
  const phone = await openServerMpr(page, true);
  timings.phone_server_mpr_ready_ms = phone.mpr;
  timings.phone_server_3d_ready_ms = phone.vr;
  // one pane shown; pictures sized for its device pixels (× 2), at most 1024 a side
  const visible = await page.evaluate(() => [...document.querySelectorAll('.srv-cell')].filter((c) => getComputedStyle(c).visibility === 'visible').length);
  assert.equal(visible, 1);
  const s0 = await state(page);
  const box = await page.locator('[data-viewport-id="srv-axial"]').boundingBox();
  assert.ok(Math.max(s0.panes.axial.width, s0.panes.axial.height) <= 1024);
  assert.ok(s0.panes.axial.width > box.width * 1.5, `device pixels: ${s0.panes.axial.width} for ${box.width} CSS px`);
  await page.screenshot({ path: join(artifacts, 'thin-phone-axial.png') });

  const cdp = await context.newCDPSession(page);
  // a tap moves the point
  const at = await page.evaluate((z) => window.radris.serverMprToPage('axial', [-50, 20, z]), s0.point[2]);
  await drag(cdp, [at], [at], 1);
  const s1 = await viewAfterInput(page);
  assert.ok(Math.abs(s1.point[0] + 50) < 1.5 && Math.abs(s1.point[1] - 20) < 1.5, `tapped ${JSON.stringify(s1.point)}`);
  await waitPicture(page, 'sagittal', new RegExp(`position=${s1.positions.sagittal}&`), s0.panes.sagittal.url);

  // the sagittal tab; two fingers step its plane
  await tapUntil(page, '[data-srv-pane="sagittal"]', paneShown);
  const sbox = await page.locator('[data-viewport-id="srv-sagittal"]').boundingBox();
  const [cx, cy] = [sbox.x + sbox.width / 2, sbox.y + sbox.height / 2];
  await drag(cdp, [[cx - 40, cy - 80], [cx + 40, cy - 80]], [[cx - 40, cy + 80], [cx + 40, cy + 80]], 10);
  const s2 = await viewAfterInput(page);
  assert.ok(s2.positions.sagittal < s1.positions.sagittal - 10, `two fingers stepped the sagittal plane: ${s1.positions.sagittal} → ${s2.positions.sagittal}`);
  await waitPicture(page, 'sagittal', new RegExp(`position=${s2.positions.sagittal}&`));

  // the W/L tool: one finger windows (Chromium swallows a tap that follows a two-finger
  // gesture within about a second: wait as a hand would)
  await page.waitForTimeout(1500);
  await tapUntil(page, '[data-srv-tool="wl"]', (sel) => document.querySelector(sel).classList.contains('on'));
  await drag(cdp, [[cx, cy]], [[cx + 60, cy + 40]]);
  const s3 = await viewAfterInput(page);
  assert.match(s3.window ?? '', /,/);
  await waitPicture(page, 'sagittal', new RegExp(`window=${encodeURIComponent(s3.window)}`));
  await page.screenshot({ path: join(artifacts, 'thin-phone-sagittal.png') });

  // 3D: one finger turns it
  await page.waitForTimeout(1500);
  await tapUntil(page, '[data-srv-pane="3d"]', paneShown);
  await settled(page, '3d');
  const before = await canvasGrey(page, 'srv-3d');
  await drag(cdp, [[cx, cy]], [[cx - 100, cy]], 10);
  const s4 = await viewAfterInput(page);
  assert.equal(s4.vr.azimuth, 50);
  await waitPicture(page, '3d', /azimuth=50&elevation=0&size=[0-9]+%2C[0-9]+$/);
  await settled(page, '3d');
  assert.ok(meanAbsDiff(before, await canvasGrey(page, 'srv-3d')) > 1, 'the 3D picture turned');
  await page.screenshot({ path: join(artifacts, 'thin-phone-3d.png') });
  assert.deepEqual(pageErrors, []);
});
