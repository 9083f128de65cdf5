// The RIS pages in the browser, on `radris serve --demo`'s day (patients, procedures, orders,
// appointments on CT01 and MR01, cases waiting on the reading worklists): register a patient
// and order two CT exams; book one on the calendar and see the second refused for the same
// slot with the conflicting appointment named; mark the patient arrived on the technologist's
// worklist; claim a demo case, find it under Mine, unclaim it; the reconciliation queue and
// the dashboard's charts render. Screenshots of each page go to web/e2e-artifacts/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, signIn, useDemoServer, waitFor, writeArtifact } from './harness.mjs';

const env = useDemoServer();

const shot = (page, name) => page.screenshot({ path: join(artifacts, `ris-${name}.png`), fullPage: true });

async function nav(page, name, heading) {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { name: heading, exact: true }).waitFor();
}

/** The value of the first option of a select whose text matches. */
async function optionValue(select, text) {
  const option = select.locator('option', { hasText: text }).first();
  await option.waitFor({ state: 'attached' });
  return option.getAttribute('value');
}

test('RIS: order entry, booking and its conflict, arrival, reading, reconciliation, dashboard', { timeout: 300_000 }, async (t) => {
  // UTC like the server, so the calendar's day and hours are the server's
  const context = await env.browser.newContext({ viewport: { width: 1440, height: 960 }, timezoneId: 'UTC' });
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const failures = [];
  page.on('response', (r) => {
    if (r.url().includes('/api/v1/ris/') && r.status() >= 500) failures.push(`${r.status()} ${r.url()}`);
  });
  t.after(async () => {
    if (failures.length || pageErrors.length) writeArtifact('ris-failures.json', { failures, pageErrors });
  });
  await signIn(page, env.server);

  // --- order entry: a new patient, two routine CT orders ---
  await nav(page, 'Orders', 'Order entry');
  await page.getByRole('button', { name: 'New patient' }).click();
  const patientForm = page.getByRole('form', { name: 'New patient' });
  const pid = `E2E${Date.now().toString(36).toUpperCase()}`;
  await patientForm.getByLabel('Patient ID', { exact: true }).fill(pid);
  await patientForm.getByLabel('Issuer', { exact: true }).fill('E2E');
  await patientForm.getByLabel('Family name', { exact: true }).fill('Testperson');
  await patientForm.getByLabel('Given name', { exact: true }).fill('Ris');
  await patientForm.getByLabel('Birth date', { exact: true }).fill('1970-05-17');
  await patientForm.getByLabel('Sex', { exact: true }).selectOption('F');
  await patientForm.getByRole('button', { name: 'Register patient' }).click();
  await page.getByTestId('selected-patient').getByText(pid).waitFor();

  const orderForm = page.getByRole('form', { name: 'New order' });
  const procedure = orderForm.getByLabel('Procedure', { exact: true });
  await procedure.selectOption(await optionValue(procedure, /\(CT, \d+ min\)/));
  await page.getByTestId('procedure-info').waitFor();
  assert.match(await page.getByTestId('procedure-info').innerText(), /CT/);
  await orderForm.getByLabel('Priority', { exact: true }).selectOption('routine');
  await orderForm.getByLabel('Reason', { exact: true }).fill('E2E: headache for two weeks');
  await orderForm.getByLabel('Referring physician', { exact: true }).fill('HOUSE^Gregory');
  await orderForm.getByRole('button', { name: 'Create order' }).click();
  const created = page.getByTestId('created-accession');
  await created.waitFor();
  const acc1 = (await created.innerText()).trim();
  assert.ok(acc1, 'the server gave the order an accession');
  await orderForm.getByRole('button', { name: 'Create order' }).click();
  await waitFor(page, (prev) => {
    const t = document.querySelector('[data-testid="created-accession"]')?.textContent?.trim();
    return t && t !== prev;
  }, acc1);
  const acc2 = (await created.innerText()).trim();
  const orders = page.getByTestId('orders');
  for (const acc of [acc1, acc2]) {
    const row = orders.locator(`tr[data-accession="${acc}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute('data-state'), 'ordered');
    await row.getByText('Ordered', { exact: true }).waitFor();
  }
  // the history on expand
  await page.getByRole('button', { name: `Details of ${acc1}`, exact: true }).click();
  await page.getByRole('table', { name: `History of ${acc1}` }).waitFor();
  await shot(page, 'orders');

  // --- scheduling: book the first order on CT01, the second is refused for the same slot ---
  await nav(page, 'Schedule', 'Schedule');
  const booking = page.getByRole('form', { name: 'Book an appointment' });
  await page.getByRole('button', { name: `Pick order ${acc1}`, exact: true }).click();
  const resource = booking.getByLabel('Resource', { exact: true });
  await resource.selectOption(await optionValue(resource, 'CT01'));
  const time = booking.getByLabel('Start time', { exact: true });
  let day = await page.getByLabel('Day', { exact: true }).inputValue();
  // the first free slot today after now, else on one of the next days
  for (let i = 0; i < 7; i += 1) {
    await page.locator(`[data-testid="calendar"][data-loaded-day="${day}"]`).waitFor();
    await booking.getByRole('button', { name: 'First free slot' }).click();
    if (await time.inputValue()) break;
    await page.getByRole('button', { name: 'Next day' }).click();
    await waitFor(page, (d) => document.querySelector('input[aria-label="Day"]')?.value !== d, day);
    day = await page.getByLabel('Day', { exact: true }).inputValue();
  }
  const slot = await time.inputValue();
  assert.match(slot, /^\d\d:\d\d$/, 'a free slot on CT01 within a week');
  await booking.getByRole('button', { name: 'Book', exact: true }).click();
  await page.getByRole('status').getByText(`Booked ${acc1}`).waitFor();
  await page.locator(`.appt-block[data-accession="${acc1}"]`).waitFor();
  await page.getByTestId('appointments').locator(`tr[data-accession="${acc1}"]`).waitFor();

  await page.getByRole('button', { name: `Pick order ${acc2}`, exact: true }).click();
  assert.equal(await time.inputValue(), slot, 'the form keeps the slot');
  assert.match(await resource.locator('option:checked').innerText(), /CT01/);
  await booking.getByRole('button', { name: 'Book', exact: true }).click();
  const conflicts = page.getByTestId('conflicts');
  await conflicts.waitFor();
  assert.match(await conflicts.innerText(), new RegExp(acc1));
  assert.ok((await page.getByRole('alert').first().innerText()).trim().length > 0, 'the server says why');
  await shot(page, 'schedule');

  // --- technologist: the patient arrives ---
  await nav(page, 'Technologist', 'Technologist worklist');
  await page.getByLabel('Day', { exact: true }).fill(day);
  await page.locator(`[data-testid="tech-day"][data-loaded-day="${day}"]`).waitFor({ state: 'attached' });
  const techRow = page.locator(`[data-testid="tech-worklist"] tr[data-accession="${acc1}"]`);
  await techRow.waitFor();
  await techRow.getByRole('button', { name: `Arrive ${acc1}`, exact: true }).click();
  await page.locator(`[data-testid="tech-worklist"] tr[data-accession="${acc1}"][data-state="arrived"]`).waitFor();
  await techRow.getByRole('button', { name: `Start exam ${acc1}`, exact: true }).waitFor();
  await shot(page, 'tech');

  // --- reading: the demo's cases; claim one, it is under Mine, unclaim ---
  await nav(page, 'Reading', 'Reading worklist');
  await page.getByRole('tab', { name: 'All', exact: true }).click();
  const worklist = page.getByTestId('reading-worklist');
  const claim = worklist.getByRole('button', { name: /^Claim / }).first();
  await claim.waitFor({ timeout: 60_000 });
  assert.ok((await worklist.locator('tbody tr[data-accession]').count()) > 0, 'demo cases wait for reading');
  const acc = (await claim.getAttribute('aria-label')).replace(/^Claim /, '');
  await claim.click();
  await page.getByRole('status').getByText(`You claimed ${acc}.`).waitFor();
  await worklist.locator(`tr[data-accession="${acc}"][data-claimed-by="demo"]`).waitFor();
  await page.getByRole('tab', { name: 'Mine', exact: true }).click();
  await worklist.locator(`tr[data-accession="${acc}"]`).waitFor();
  await shot(page, 'reading');
  await worklist.getByRole('button', { name: `Unclaim ${acc}`, exact: true }).click();
  await page.getByRole('status').getByText(`${acc} is back on the worklist.`).waitFor();

  // --- reconciliation ---
  await nav(page, 'Reconciliation', 'Reconciliation');
  await page.locator('[data-testid="unmatched"][data-loaded="true"]').waitFor({ state: 'attached' });
  await shot(page, 'reconciliation');
  // where the demo left an unmatched study with a candidate order, linking it clears it from the queue
  const card = page.getByTestId('unmatched').locator('article').first();
  if ((await card.count()) && (await card.getByRole('radio').count())) {
    const studyUid = await card.getAttribute('data-study-uid');
    await card.getByRole('radio').first().check();
    await card.getByRole('button', { name: 'Resolve', exact: true }).click();
    await page.locator(`article[data-study-uid="${studyUid}"]`).waitFor({ state: 'detached' });
    await page.getByRole('status').getByText(/linked to/).waitFor();
  }

  // --- dashboard: charts with bars, numbers in tables ---
  await nav(page, 'Dashboard', 'Dashboard');
  await page.getByTestId('chart-queues').locator('svg[role="img"] rect.bar').first().waitFor();
  assert.ok((await page.locator('figure.chart svg rect.bar').count()) > 0);
  await page.getByRole('table', { name: 'Orders by state: numbers' }).waitFor();
  await page.getByLabel('Range', { exact: true }).selectOption('30');
  await page.getByTestId('chart-queues').locator('svg rect.bar').first().waitFor();
  await shot(page, 'dashboard');

  assert.deepEqual(failures, []);
  assert.deepEqual(pageErrors, []);
});
