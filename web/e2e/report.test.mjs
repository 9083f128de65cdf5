// The report editor in the browser, on `radris serve --demo`: claim a demo case on the reading
// worklist and open its report; start it from a template, fill the required fields, the
// findings (typed and dictated), the impression (with a macro) and the viewer's measurements;
// autosave ("Saved") survives a reload; sign it final with the password again; the signed
// version shows its SHA-256 and verifies (✓); the reopened page is read-only with the signed
// text; the PDF link answers application/pdf; a critical result is flagged; an addendum is
// signed as amended. Screenshots go to web/e2e-artifacts/report-*.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, signIn, useDemoServer, waitFor, writeArtifact } from './harness.mjs';

const env = useDemoServer();

const shot = (page, name) => page.screenshot({ path: join(artifacts, `report-${name}.png`), fullPage: true });

/** A value the field accepts, by its kind (see ReportPage's Field). */
async function fillField(field) {
  const kind = await field.getAttribute('data-kind');
  switch (kind) {
    case 'choice': {
      const select = field.locator('select');
      const value = await select.locator('option:not([value=""])').first().getAttribute('value');
      await select.selectOption(value);
      return;
    }
    case 'multichoice':
    case 'boolean':
      await field.locator('input[type="checkbox"]').first().check();
      return;
    case 'number': {
      const input = field.locator('input');
      const min = Number((await input.getAttribute('min')) ?? 'NaN');
      const max = Number((await input.getAttribute('max')) ?? 'NaN');
      let v = Number.isFinite(min) ? Math.max(min, 1) : 1;
      if (Number.isFinite(max) && v > max) v = max;
      await input.fill(String(v));
      return;
    }
    case 'date':
      await field.locator('input').fill('2026-11-28');
      return;
    case 'time':
      await field.locator('input').fill('10:30');
      return;
    case 'textarea':
      await field.locator('textarea').fill('E2E structured text.');
      return;
    default:
      await field.locator('input').fill('E2E value');
  }
}

async function waitSaved(page) {
  await page.locator('[data-testid="save-state"][data-state="saved"]').waitFor({ timeout: 30_000 });
}

/** Sign with the password in the dialog; the page then shows `status`. */
async function signAs(page, button, status) {
  await page.getByRole('button', { name: button, exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Password', { exact: true }).fill(env.server.password);
  await dialog.getByRole('button', { name: 'Sign', exact: true }).click();
  await waitFor(
    page,
    (s) => document.querySelector(`main[data-status="${s}"]`) || document.querySelector('[role="dialog"] [role="alert"]'),
    status,
  );
  if (await dialog.count()) assert.fail(`signing as ${status} was refused: ${await dialog.getByRole('alert').innerText()}`);
}

test('report: start from a template, autosave, sign final, verify, read-only, addendum, PDF', { timeout: 300_000 }, async (t) => {
  const context = await env.browser.newContext({ viewport: { width: 1440, height: 1000 }, timezoneId: 'UTC' });
  t.after(() => context.close().catch(() => {}));
  // a stand-in for the browser's speech recognition (headless Chromium has none): the
  // microphone button appears and its words land in the focused text field
  await context.addInitScript(() => {
    const result = (transcript, isFinal) => Object.assign([{ transcript }], { isFinal });
    window.SpeechRecognition = class {
      start() {
        setTimeout(() => this.onresult?.({ resultIndex: 0, results: [result('dictated', false)] }), 50);
        setTimeout(() => {
          this.onresult?.({ resultIndex: 0, results: [result('dictated words', true)] });
          this.onend?.();
        }, 300);
      }
      stop() {
        this.onend?.();
      }
    };
  });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const failures = [];
  page.on('response', (r) => {
    if ((r.url().includes('/api/v1/reports') || r.url().includes('/report')) && r.status() >= 500) failures.push(`${r.status()} ${r.url()}`);
  });
  t.after(async () => {
    if (failures.length || pageErrors.length) writeArtifact('report-failures.json', { failures, pageErrors, log: env.server.log().slice(-20_000) });
  });
  await signIn(page, env.server);

  // --- claim a demo case with images on the reading worklist, open its report ---
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Reading', exact: true }).click();
  await page.getByRole('heading', { name: 'Reading worklist', exact: true }).waitFor();
  await page.getByRole('tab', { name: 'All', exact: true }).click();
  const worklist = page.getByTestId('reading-worklist');
  const row = worklist
    .locator('tbody tr[data-accession]')
    .filter({ has: page.getByRole('button', { name: /^Claim / }) })
    .filter({ has: page.getByRole('button', { name: /^Report / }) })
    .first();
  await row.waitFor({ timeout: 60_000 });
  const acc = await row.getAttribute('data-accession');
  await row.getByRole('button', { name: `Claim ${acc}`, exact: true }).click();
  await page.getByRole('status').getByText(`You claimed ${acc}.`).waitFor();
  await worklist.getByRole('button', { name: `Report ${acc}`, exact: true }).click();
  await page.waitForURL(/\/report\/[^/]+$/);
  const reportUrl = page.url();

  // --- start it from a template ---
  await page.getByRole('heading', { name: 'New report', exact: true }).waitFor();
  const start = page.getByRole('form', { name: 'Start a report' });
  const template = start.getByLabel('Template', { exact: true });
  await template.locator('option').first().waitFor({ state: 'attached' });
  assert.ok((await template.locator('option').count()) > 0, 'the starter library has templates');
  await start.getByRole('button', { name: 'Start report', exact: true }).click();
  await page.locator('main[data-status="draft"]').waitFor();
  const form = page.getByRole('form', { name: 'Report' });
  await form.getByText('Loading the template…').waitFor({ state: 'detached' });
  assert.ok((await form.locator('[data-field]').count()) > 0, 'the template has structured fields');
  await shot(page, 'new');

  // --- the required fields, the findings, a macro into the impression ---
  const required = form.locator('[data-field][data-required="true"]');
  const n = await required.count();
  for (let i = 0; i < n; i += 1) await fillField(required.nth(i));
  const typed = `E2E findings ${Date.now().toString(36)}: lungs are clear, no effusion.`;
  await page.locator('#report-narrative').fill(typed);
  // dictation appends to the focused field
  await page.locator('#report-narrative').click();
  await page.getByRole('button', { name: 'Dictate', exact: true }).click();
  const findings = `${typed} dictated words`;
  await waitFor(page, (text) => document.querySelector('#report-narrative')?.value === text, findings);
  await page.getByRole('button', { name: 'Dictate', exact: true }).waitFor();
  // the viewer's saved measurements and key images of the study
  const studyUid = await page.locator('main[data-study-uid]').getAttribute('data-study-uid');
  const annotations = `${env.server.base}/api/v1/studies/${studyUid}/annotations`;
  const current = await (await page.request.get(annotations)).json();
  const put = await page.request.put(annotations, {
    data: {
      version: current.version,
      document: {
        measurements: [
          { uid: 'e2e-1', tool: 'Length', seriesUid: '1.2', sopInstanceUid: '1.2.3.4', frame: 1, frameOfReferenceUid: '', points: [[0, 0, 0], [12.34, 0, 0]], summary: '12.3 mm', values: { length: 12.34, unit: 'mm' } },
        ],
        keyImages: [{ seriesUid: '1.2', sopInstanceUid: '1.2.3.4', frame: 1 }],
      },
    },
  });
  assert.equal(put.status(), 200, await put.text());
  await form.getByRole('button', { name: 'Insert measurements from the viewer', exact: true }).click();
  const measurements = form.getByRole('table', { name: 'Measurements' });
  await measurements.getByRole('row', { name: /Length 1\s+12\.3 mm/ }).waitFor();
  await form.getByRole('list', { name: 'Key images' }).getByRole('listitem').first().waitFor();
  // the impression: the template's own Impression field where it has one, else the editor's
  const impression = page.locator('#report-field-impression, #report-impression').first();
  await impression.fill('');
  await page.getByRole('button', { name: 'Insert macro: No acute cardiopulmonary abnormality.', exact: true }).click();
  assert.equal(await impression.inputValue(), 'No acute cardiopulmonary abnormality.');
  await waitSaved(page);
  assert.equal(await page.getByTestId('save-state').innerText(), 'Saved');
  await shot(page, 'draft');

  // --- autosave: a reload shows the text again ---
  await page.reload();
  await page.locator('main[data-status="draft"]').waitFor();
  await waitFor(page, (text) => document.querySelector('#report-narrative')?.value === text, findings);
  assert.equal(await page.locator('#report-field-impression, #report-impression').first().inputValue(), 'No acute cardiopulmonary abnormality.');
  await form.getByText('Loading the template…').waitFor({ state: 'detached' });
  await form.getByRole('table', { name: 'Measurements' }).getByRole('row', { name: /Length 1\s+12\.3 mm/ }).waitFor();
  for (let i = 0; i < n; i += 1) {
    const f = required.nth(i);
    const kind = await f.getAttribute('data-kind');
    if (kind === 'choice') assert.notEqual(await f.locator('select').inputValue(), '', 'a saved choice');
    else if (kind === 'multichoice' || kind === 'boolean') assert.ok(await f.locator('input[type="checkbox"]').first().isChecked(), 'a saved tick');
    else assert.notEqual(await f.locator('input, textarea').first().inputValue(), '', 'a saved value');
  }

  // --- sign final with the password; the version, its SHA-256, its signature checked ---
  await signAs(page, 'Sign final', 'final');
  await page.getByTestId('report-status').getByText('Final', { exact: true }).waitFor();
  const sha = page.getByTestId('sha256-1');
  await sha.waitFor();
  assert.match(await sha.getAttribute('data-sha256'), /^[0-9a-f]{64}$/);
  await page.getByRole('button', { name: 'Verify version 1', exact: true }).click();
  const check = page.getByTestId('verify-1');
  await check.waitFor();
  assert.equal(await check.getAttribute('data-valid'), 'true', await check.innerText());
  assert.match(await check.innerText(), /✓/);
  await shot(page, 'signed');

  // --- reopened: read-only with the signed text ---
  await page.goto(reportUrl);
  await page.locator('main[data-status="final"]').waitFor();
  await page.getByTestId('read-only').waitFor();
  const narrative = page.locator('#report-narrative');
  await waitFor(page, (text) => document.querySelector('#report-narrative')?.value === text, findings);
  assert.equal(await narrative.isEditable(), false, 'a final report is read-only');
  assert.equal(await page.getByRole('button', { name: 'Sign final', exact: true }).count(), 0);
  assert.match(await page.getByTestId('sha256-1').getAttribute('data-sha256'), /^[0-9a-f]{64}$/);
  await shot(page, 'final');

  // --- the PDF ---
  const href = await page.getByRole('link', { name: 'PDF', exact: true }).getAttribute('href');
  const pdf = await page.request.get(new URL(href, env.server.base).toString());
  assert.equal(pdf.status(), 200);
  assert.match(pdf.headers()['content-type'] ?? '', /^application\/pdf/);
  assert.equal((await pdf.body()).subarray(0, 5).toString('latin1'), '%PDF-');

  // --- a critical result: flagged, then acknowledged (or the server's refusal shown) ---
  const critical = page.getByRole('region', { name: 'Critical result' });
  await critical.getByRole('checkbox', { name: 'Critical result', exact: true }).check();
  await critical.getByLabel('Critical finding', { exact: true }).fill('E2E: tension pneumothorax, called to the ward');
  await critical.getByRole('button', { name: 'Flag critical result', exact: true }).click();
  await critical.getByTestId('critical').getByText('E2E: tension pneumothorax, called to the ward').waitFor();
  await critical.getByText(/^Flagged /).waitFor();
  await critical.getByRole('button', { name: 'Acknowledge', exact: true }).click();
  await waitFor(page, () => document.querySelector('.critical.acknowledged') || document.querySelector('.critical-panel [role="alert"]'));
  if (await critical.getByRole('alert').count()) assert.ok((await critical.getByRole('alert').innerText()).trim(), 'the refusal says why');
  else await critical.getByText(/^Acknowledged by demo/).waitFor();

  // --- an addendum, signed as amended ---
  await page.getByRole('button', { name: 'Add addendum', exact: true }).click();
  const addendum = page.getByLabel('Addendum 1', { exact: true });
  await addendum.fill('E2E addendum: comparison with the prior study added.');
  await waitSaved(page);
  await signAs(page, 'Sign addendum', 'amended');
  await page.getByTestId('sha256-2').waitFor();
  await page.getByRole('button', { name: 'Verify version 2', exact: true }).click();
  await page.locator('[data-testid="verify-2"][data-valid="true"]').waitFor();
  await page.getByText('E2E addendum: comparison with the prior study added.').waitFor();
  await shot(page, 'amended');

  assert.deepEqual(failures, []);
  assert.deepEqual(pageErrors, []);
});
