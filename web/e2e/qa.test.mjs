// The quality-assurance page in the browser, on `radris serve --demo` (signed reports by the
// demo's other radiologists; `demo` is a radiologist too): open /qa from the top bar, draw
// reports to review, read a pending one's signed text, score it 2b with a comment (the
// significance is disabled for 1 and required for 2), see it done with its score and the
// quality figures' chart with a bar for "2b" and the numbers in tables; the report link opens
// the report. Screenshots: web/e2e-artifacts/qa.png (and qa-review.png, the scoring form).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, signIn, useDemoServer, writeArtifact } from './harness.mjs';

const env = useDemoServer();

test('QA: draw reports to review, score one 2b, see it done and in the quality figures', { timeout: 300_000 }, async (t) => {
  const context = await env.browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: 'UTC' });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const failures = [];
  page.on('response', (r) => {
    if (r.url().includes('/api/v1/') && r.status() >= 500) failures.push(`${r.status()} ${r.url()}`);
  });
  t.after(async () => {
    if (failures.length || pageErrors.length) writeArtifact('qa-failures.json', { failures, pageErrors, log: env.server.log().slice(-20_000) });
  });
  await signIn(page, env.server);

  // --- the page, from the top bar ---
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'QA', exact: true }).click();
  await page.waitForURL(/\/qa$/);
  await page.getByRole('heading', { name: 'Quality assurance', exact: true }).waitFor();
  await page.locator('[data-testid="peer-reviews"][data-loaded="true"]').waitFor();
  await page.locator('[data-testid="quality"][data-loaded="true"]').waitFor();
  const figures = page.getByRole('table', { name: 'Quality figures', exact: true });
  const figure = (name) => figures.getByRole('row', { name: new RegExp(`^${name}`) }).locator('td');
  assert.equal(await figure('Reviews done').innerText(), '0');
  assert.ok(Number(await figure('Reports signed').innerText()) >= 1, 'the demo has signed reports');

  // --- draw reports to review ---
  const drawForm = page.getByRole('form', { name: 'Draw reports to review' });
  await drawForm.getByLabel('Count').fill('5');
  await drawForm.getByRole('button', { name: 'Draw reports to review', exact: true }).click();
  const drew = page.getByRole('status');
  await drew.waitFor();
  const drewText = await drew.innerText();
  assert.match(drewText, /^Drew \d+ reports? to review\.$/, `nothing to draw (every demo report signed by demo?): ${drewText}`);
  const pending = page.getByTestId('pending-reviews');
  const row = pending.locator('tbody tr[data-review-id]:not([data-accession=""])').first();
  await row.waitFor();
  assert.ok((await pending.locator('tbody tr[data-review-id]').count()) >= 1, 'at least one pending review');
  const acc = await row.getAttribute('data-accession');
  const reviewId = await row.getAttribute('data-review-id');
  const author = await row.locator('td').nth(3).innerText();
  assert.notEqual(author, 'demo', 'a review is of another radiologist’s report');
  const link = row.getByRole('link', { name: `Open the report ${acc}`, exact: true });
  assert.match(await link.getAttribute('href'), /^\/report\/[^/]+$/);
  await page.locator('[data-testid="quality"]').getByRole('row', { name: /^Reviews pending/ }).locator('td').filter({ hasNotText: /^0$/ }).waitFor();

  // --- read the signed report, score it 2b ---
  await row.getByRole('button', { name: `Review ${acc}`, exact: true }).click();
  const report = page.getByRole('article', { name: `Signed report ${acc}`, exact: true });
  await report.waitFor();
  assert.ok((await report.innerText()).length > 40, 'the signed text shows');
  assert.match(await report.getByRole('link', { name: 'PDF', exact: true }).getAttribute('href'), /^\/api\/v1\/reports\/[^/]+\/pdf$/);
  const form = page.getByRole('form', { name: `Score ${acc}`, exact: true });
  const submit = form.getByRole('button', { name: 'Submit review', exact: true });
  const sigA = form.getByRole('radio', { name: /^a / });
  const sigB = form.getByRole('radio', { name: /^b / });
  assert.ok(await submit.isDisabled(), 'no score yet');
  await form.getByRole('radio', { name: /^1 / }).check();
  assert.ok(await sigA.isDisabled(), 'score 1 takes no significance');
  assert.ok(await submit.isEnabled());
  await form.getByRole('radio', { name: /^2 / }).check();
  assert.ok(await sigB.isEnabled());
  assert.ok(await submit.isDisabled(), 'score 2 needs a significance');
  await form.getByText(/needs the clinical significance/).waitFor();
  await sigB.check();
  await form.getByLabel('Comment').fill('Missed the 6 mm nodule in the right upper lobe.');
  assert.ok(await submit.isEnabled());
  await page.screenshot({ path: join(artifacts, 'qa-review.png'), fullPage: true });
  await submit.click();

  // --- done with its score ---
  await page.getByRole('status').getByText(`Review of ${acc} saved: 2b.`, { exact: true }).waitFor();
  const done = page.getByTestId('done-reviews').locator(`tr[data-review-id="${reviewId}"]`);
  await done.waitFor();
  assert.equal(await done.getAttribute('data-score'), '2b');
  assert.match(await done.innerText(), /2b[\s\S]*Missed the 6 mm nodule/);
  assert.equal(await pending.locator(`tr[data-review-id="${reviewId}"]`).count(), 0);

  // --- the quality figures: a bar for 2b, the numbers in tables ---
  const chart = page.getByTestId('chart-peer-scores');
  await chart.locator('svg[role="img"] rect.bar', { has: page.locator('title', { hasText: /^2b, Reviews: 1$/ }) }).waitFor();
  const numbers = page.getByRole('table', { name: 'Peer review scores: numbers', exact: true });
  assert.equal(await numbers.getByRole('row', { name: /^2b / }).locator('td').first().innerText(), '1');
  assert.equal(await figure('Reviews done').innerText(), '1');
  assert.equal(await figure('Discrepancy rate').innerText(), '100 %');
  await page.screenshot({ path: join(artifacts, 'qa.png'), fullPage: true });

  // --- the report link opens the (read-only, signed) report ---
  await page.getByTestId('done-reviews').getByRole('link', { name: `Open the report ${acc}`, exact: true }).click();
  await page.waitForURL(/\/report\/[^/]+$/);
  await page.locator('main[data-status="final"], main[data-status="amended"]').waitFor();
  await page.goBack();
  await page.getByRole('heading', { name: 'Quality assurance', exact: true }).waitFor();
  await page.getByTestId('done-reviews').locator(`tr[data-review-id="${reviewId}"][data-score="2b"]`).waitFor();

  assert.deepEqual(failures, []);
  assert.deepEqual(pageErrors, []);
});
