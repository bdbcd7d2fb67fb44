// Payer journeys through the real pages of a running `walleot serve`, in headless
// Chromium with a virtual WebAuthn authenticator. Started by the Rust test
// `crates/walleot-server/tests/browser.rs`, which passes the service's address, a test
// key and a test voucher in the environment, and checks the ledger afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const KEY = process.env.WALLEOT_KEY;
const VOUCHER = process.env.VOUCHER_CODE;
const SHOTS = process.env.SCREENSHOT_DIR;
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => { await browser?.close(); });

async function api(method, path, body) {
  const response = await fetch(`${BASE}/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json();
  assert.ok(response.ok, `${method} ${path}: ${JSON.stringify(answer)}`);
  return answer;
}

const createSession = (amount, description = 'Premium analysis') =>
  api('POST', '/sessions', { amount, currency: 'usd', description });
const statusOf = async (id) => (await api('GET', `/sessions/${id}`)).status;

/// A browser profile of its own; with a passkey authenticator unless told otherwise.
async function payerPage({ passkey = true, mobile = false } = {}) {
  const context = await browser.newContext(mobile ? { viewport: { width: 390, height: 844 }, isMobile: true } : {});
  const page = await context.newPage();
  if (passkey) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
  }
  return page;
}

async function stateOf(page) {
  return page.locator('#state').getAttribute('data-state');
}

async function waitForState(page, state) {
  await page.waitForSelector(`#state[data-state="${state}"]`, { timeout: 15000 });
}

/// Registers a wallet from the wallet page: the two clicks of a new payer.
async function registeredPayer(options) {
  const page = await payerPage(options);
  await page.goto(`${BASE}/wallet`);
  await page.click('#create-wallet');
  await page.waitForSelector('#balances');
  return page;
}

function totpCode(base32, now = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of base32) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)));
  const digest = createHmac('sha1', bytes).update(counter).digest();
  const offset = digest[19] & 0x0f;
  const value = digest.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 1000000).padStart(6, '0');
}

test('a new payer makes a wallet in two clicks and a small charge is paid at once', async () => {
  const session = await createSession(15, 'Quick lookup');
  const page = await payerPage();
  await page.goto(session.url);
  await waitForState(page, 'register');
  assert.equal(await page.textContent('.merchant'), 'Demo merchant');
  assert.equal(await page.textContent('#amount'), '0.15 USD');
  await page.screenshot({ path: join(SHOTS, 'checkout-new-payer.png'), fullPage: true });
  await page.click('#create-wallet'); // click one; the passkey prompt is click two
  await waitForState(page, 'paid');
  assert.match(await page.textContent('#state'), /automatically/);
  await page.screenshot({ path: join(SHOTS, 'checkout-paid.png'), fullPage: true });
  assert.equal(await statusOf(session.sessionId), 'paid');
});

test('above the threshold, one tap on the passkey approves', async () => {
  const page = await registeredPayer({ mobile: true });
  const session = await createSession(250);
  await page.goto(session.url);
  await waitForState(page, 'approve');
  assert.equal(await statusOf(session.sessionId), 'pending', 'nothing is paid before the tap');
  await page.screenshot({ path: join(SHOTS, 'checkout-approve-mobile.png'), fullPage: true });
  await page.click('#approve');
  await waitForState(page, 'paid');
  assert.equal(await statusOf(session.sessionId), 'paid');
});

// Passkeys of the other algorithms authenticators make, each with the OID its PKCS#8
// private key names: rsaEncryption (1.2.840.113549.1.1.1), id-Ed25519 (1.3.101.112).
for (const { name, alg, oid } of [
  { name: 'an RS256 passkey, as Windows Hello makes,', alg: -257, oid: '06092a864886f70d010101' },
  { name: 'an Ed25519 passkey, as some security keys make,', alg: -8, oid: '06032b6570' },
]) {
  test(`${name} registers and approves`, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    // The virtual authenticator makes a key of the first offered algorithm it supports:
    // keep only this one, as an authenticator that knows no other would, and note what
    // the service offered (the page reloads once the wallet is made).
    await page.addInitScript((only) => {
      const create = navigator.credentials.create.bind(navigator.credentials);
      navigator.credentials.create = (options) => {
        const params = options.publicKey.pubKeyCredParams;
        sessionStorage.setItem('offeredAlgorithms', JSON.stringify(params.map((p) => p.alg)));
        options.publicKey.pubKeyCredParams = params.filter((p) => p.alg === only);
        return create(options);
      };
    }, alg);
    await page.goto(`${BASE}/wallet`);
    await page.click('#create-wallet');
    await page.waitForSelector('#balances');
    const offered = JSON.parse(await page.evaluate(() => sessionStorage.getItem('offeredAlgorithms')));
    assert.ok(offered.includes(alg), `${alg} is offered: ${offered}`);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    const privateKey = Buffer.from(credentials[0].privateKey, 'base64');
    assert.ok(privateKey.includes(Buffer.from(oid, 'hex')), `a key of algorithm ${alg}`);

    const session = await createSession(275, `Approved with a passkey of algorithm ${alg}`);
    await page.goto(session.url);
    await waitForState(page, 'approve');
    await page.click('#approve');
    await waitForState(page, 'paid');
    assert.equal(await statusOf(session.sessionId), 'paid');
    await context.close();
  });
}

test('a checkout that another site opens without a click waits for the pay button', async () => {
  const page = await registeredPayer();
  const session = await createSession(20, 'Opened by another site');
  // A page of another site sends the browser on by itself, without a click of the payer.
  await page.route('http://drive-by.test/', (route) => route.fulfill({
    contentType: 'text/html',
    body: `<meta http-equiv="refresh" content="0;url=${session.url}">`,
  }));
  await page.goto('http://drive-by.test/');
  await waitForState(page, 'confirm');
  assert.equal(await statusOf(session.sessionId), 'pending', 'nothing is paid before the click');
  await page.screenshot({ path: join(SHOTS, 'checkout-confirm.png'), fullPage: true });
  await page.click('#pay');
  await waitForState(page, 'paid');
  assert.equal(await statusOf(session.sessionId), 'paid');
});

test('the payer can decline', async () => {
  const page = await registeredPayer();
  const session = await createSession(300);
  await page.goto(session.url);
  await waitForState(page, 'approve');
  await page.click('#decline');
  await waitForState(page, 'cancelled');
  assert.equal(await statusOf(session.sessionId), 'cancelled');
});

test('insufficient funds, a top-up, then the payment', async () => {
  const page = await registeredPayer();
  const session = await createSession(1500, 'Large batch');
  await page.goto(session.url);
  await waitForState(page, 'insufficient');
  assert.match(await page.textContent('#state'), /10\.00 USD/);
  await page.screenshot({ path: join(SHOTS, 'checkout-insufficient.png'), fullPage: true });
  assert.equal(await statusOf(session.sessionId), 'pending');
  await page.click('#add-credits');
  await waitForState(page, 'approve');
  await page.click('#approve');
  await waitForState(page, 'paid');
  assert.equal(await statusOf(session.sessionId), 'paid');
});

test('a voucher is redeemed once on the wallet page, and the threshold is editable', async () => {
  const page = await registeredPayer();
  await page.fill('#voucher-code', VOUCHER.toLowerCase());
  await page.click('#redeem');
  await page.waitForSelector('#notice');
  assert.match(await page.textContent('#balances'), /15\.00/);
  await page.fill('#voucher-code', VOUCHER);
  await page.click('#redeem');
  await page.waitForSelector('#message:not([hidden])');
  assert.match(await page.textContent('#message'), /already been redeemed/);

  await page.fill('#threshold-usd', '5.00');
  await page.click('form[action="/wallet/threshold"] button');
  await page.waitForSelector('#notice');
  assert.equal(await page.inputValue('#threshold-usd'), '5.00');
  const session = await createSession(250);
  await page.goto(session.url);
  await waitForState(page, 'paid');
  assert.equal(await statusOf(session.sessionId), 'paid', 'paid without a tap under the new limit');
  await page.goto(`${BASE}/wallet`);
  assert.match(await page.textContent('#history'), /Demo merchant: Premium analysis/);
  await page.screenshot({ path: join(SHOTS, 'wallet.png'), fullPage: true });
});

test('an expired payment says so', async () => {
  const session = await createSession(100);
  await api('POST', `/test_helpers/sessions/${session.sessionId}/expire`);
  const page = await registeredPayer();
  await page.goto(session.url);
  await waitForState(page, 'expired');
  await page.screenshot({ path: join(SHOTS, 'checkout-expired.png'), fullPage: true });
  const missing = await page.goto(`${BASE}/checkout/sess_000000000000000000000000`);
  assert.equal(missing.status(), 404);
  assert.match(await page.textContent('h1'), /No such payment/);
});

test('without a passkey an authenticator app works, and wrong codes lock approval', async () => {
  const page = await payerPage({ passkey: false });
  const session = await createSession(300);
  await page.goto(session.url);
  await page.click('#totp-link');
  const secret = (await page.textContent('#totp-secret')).trim();
  assert.ok(await page.locator('.qr svg').count(), 'a QR code is shown');
  await page.screenshot({ path: join(SHOTS, 'totp-enrolment.png'), fullPage: true });
  await page.fill('#totp-code', totpCode(secret));
  await page.click('#totp-confirm');
  await waitForState(page, 'approve');
  for (let attempt = 0; attempt < 5; attempt++) {
    await page.fill('#totp-code', '000000' === totpCode(secret) ? '111111' : '000000');
    await Promise.all([page.waitForNavigation(), page.click('#approve-code')]);
  }
  await waitForState(page, 'locked');
  assert.equal(await statusOf(session.sessionId), 'pending', 'a locked approval leaves the payment open');

  // A small charge is still paid under the threshold.
  const small = await createSession(10);
  await page.goto(small.url);
  await waitForState(page, 'paid');
});

test('a payer grants a mandate with the passkey, the next calls need no link, and revoking asks again', async () => {
  const customer = `agent-${Date.now()}`;
  const call = (amount = 45) =>
    api('POST', '/sessions', { amount, currency: 'usd', description: 'Paid tool call', customer });

  // The first paid call: a link, approved with one tap.
  const page = await registeredPayer();
  const first = await call();
  assert.equal(first.status, 'pending');
  await page.goto(first.url);
  await waitForState(page, 'approve');
  await page.click('#approve');
  await waitForState(page, 'paid');

  // The paid checkout offers the mandate, prefilled; one form and one tap grant it.
  await page.waitForSelector('#grant-form');
  assert.equal(await page.inputValue('#grant-per-call'), '1.00');
  await page.fill('#grant-per-call', '0.50');
  await page.selectOption('#grant-period', 'day');
  await page.fill('#grant-period-limit', '4.50');
  await page.screenshot({ path: join(SHOTS, 'checkout-grant.png'), fullPage: true });
  await page.click('#grant-passkey');
  await page.waitForSelector('#mandate-granted');

  // The next ten calls run without a link: paid at creation, under the mandate.
  for (let i = 0; i < 10; i++) {
    const next = await call();
    assert.equal(next.status, 'paid', `call ${i + 1}`);
    assert.ok(next.mandateId, `call ${i + 1} names its mandate`);
  }
  // The day's 4.50 is spent: the link again.
  const spent = await call();
  assert.equal(spent.status, 'pending');
  assert.equal(spent.mandateId, null);

  // The wallet page shows it; one click revokes it, effective at once.
  await page.goto(`${BASE}/wallet`);
  const row = page.locator('#mandates tr[data-status="active"]');
  assert.equal(await row.count(), 1);
  assert.match(await row.textContent(), /0\.50 USD a call/);
  await page.screenshot({ path: join(SHOTS, 'wallet-mandates.png'), fullPage: true });
  await row.locator('button').click();
  await page.waitForSelector('#mandates tr[data-status="revoked"]');
  const after = await call(10);
  assert.equal(after.status, 'pending', 'revoked: the link again');
  const mandates = await api('GET', `/mandates?customer=${customer}`);
  assert.equal(mandates.data[0].status, 'revoked');
  assert.equal(mandates.data[0].spentTotal, 450);
});
