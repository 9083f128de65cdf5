// Sign-in security in the browser: idle logoff with its warning, a passkey added from the
// Security page and then asked for after the password (Chromium's virtual authenticator,
// over the DevTools protocol), and TOTP enrolment from the same page.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { artifacts, launchBrowser, signIn, startServer } from './harness.mjs';

let server;
let browser;
// WebAuthn needs a secure context and a domain as relying party: http://localhost, not 127.0.0.1
let base;

before(async () => {
  server = await startServer();
  base = server.base.replace('127.0.0.1', 'localhost');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret. */
function totp(secretB32, when = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretB32.replace(/[\s=]/g, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(when / 1000 / 30)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

async function fillPassword(page) {
  await page.goto(base + '/');
  await page.getByLabel('Organisation').fill('default');
  await page.getByLabel('User', { exact: true }).fill('demo');
  await page.getByLabel('Password').fill(server.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('idle logoff: a warning two minutes ahead, then signed out', { timeout: 120_000 }, async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  await page.clock.install();
  // no identity provider is configured: the form offers no single sign-on link
  await page.goto(base + '/');
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.waitForLoadState('networkidle');
  assert.equal(await page.getByText('Single sign-on').count(), 0);
  await signIn(page, { ...server, base });
  await page.clock.fastForward('13:30');
  const warning = page.getByRole('alertdialog');
  await warning.waitFor();
  assert.match(await warning.innerText(), /signed out in 1:\d\d for inactivity/);
  // staying is one click, and the warning goes
  await warning.getByRole('button', { name: 'Stay signed in' }).click();
  await warning.waitFor({ state: 'detached' });
  // then 15 minutes without input: signed out, here and on the server
  await page.clock.fastForward('15:05');
  await page.getByText('You were signed out after a period of inactivity.').waitFor();
  assert.equal(await page.evaluate(() => fetch('/api/v1/whoami').then((r) => r.status)), 401);
});

test('second factors from the Security page: a passkey, then an authenticator app', { timeout: 180_000 }, async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close().catch(() => {}));
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await signIn(page, { ...server, base });
  await page.getByRole('link', { name: 'Security' }).click();
  await page.getByLabel('Passkey name').fill('test laptop');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await page.getByTestId('passkeys').getByText('test laptop').waitFor();

  // the right password is not enough any more: the passkey is asked for, and signs in
  await page.getByRole('button', { name: 'Sign out' }).click();
  await fillPassword(page);
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await page.getByTestId('who').waitFor();
  assert.match(await page.getByTestId('who').innerText(), /demo\s*@default/);

  // an authenticator app as well: the key is shown, a code from it confirms, recovery codes once
  await page.getByRole('link', { name: 'Security' }).click();
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const secret = await page.getByTestId('totp-secret').innerText();
  await page.getByLabel('Code from the app').fill(totp(secret));
  await page.getByRole('button', { name: 'Confirm' }).click();
  const codes = (await page.getByTestId('recovery-codes').locator('code').allInnerTexts()).map((c) => c.trim());
  assert.equal(codes.length, 10);
  await page.screenshot({ path: join(artifacts, 'security-page.png') });

  // sign in again: passkey or code; a wrong code is refused, a recovery code works
  await page.getByRole('button', { name: 'Sign out' }).click();
  await fillPassword(page);
  await page.getByRole('button', { name: 'Use your passkey' }).waitFor();
  const code = page.getByLabel('authenticator or recovery code');
  await code.fill('000000');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText(/wrong user name, password or code/).waitFor();
  await code.fill(codes[0]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
  // the recovery code was single use
  await page.getByRole('button', { name: 'Sign out' }).click();
  await fillPassword(page);
  await code.fill(codes[0]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText(/wrong user name, password or code/).waitFor();
});
