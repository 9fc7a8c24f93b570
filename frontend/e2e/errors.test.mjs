// @ts-check
/**
 * Limits and refusals: sends paced to the server's rate (a burst never gets the page closed),
 * failures grouped with "Resend all", a frame over the size limit refused in the page, a full
 * server explained and retried.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  launchBrowser,
  listTexts,
  openUi,
  rawClient,
  seriousViolations,
  startServer,
  until,
  waitForState,
  withServerAndBrowser,
} from './helpers.mjs';

/**
 * Submits `texts` from the page as fast as a script can (faster than any typing or pasting).
 * @param {import('playwright-core').Page} page
 * @param {string[]} texts
 */
async function burst(page, texts) {
  await page.evaluate((all) => {
    const input = /** @type {HTMLTextAreaElement} */ (document.getElementById('message-input'));
    const form = /** @type {HTMLFormElement} */ (document.getElementById('composer'));
    for (const text of all) {
      input.value = text;
      form.requestSubmit();
    }
  }, texts);
}

test('a burst of 100 sends is paced to the server rate: all delivered, in order, never closed', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: ['--publish-rate', '20', '--publish-burst', '10'] }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const raw = await rawClient(server.url);
    const clientId = await page.locator('#info-client').innerText();
    const texts = Array.from({ length: 100 }, (_, i) => `burst ${i + 1}`);
    await burst(page, texts);

    // The queue is visible while it drains.
    const progress = page.locator('#send-progress');
    await progress.filter({ hasText: /^Sending \d+ of 100 · paced to the server's 20\/s$/ }).waitFor();
    await page.locator('#chat-list li.own[data-status="queued"]').first().waitFor();
    await page.locator('#m-sent .sub', { hasText: /queued/ }).waitFor();
    // Screen readers hear the start and the end of the run, not every step.
    await page.locator('#announcer', { hasText: "Sending 100 messages at the server's pace." }).waitFor({ state: 'attached' });

    // All delivered, in order, on the same connection; no refusal, no failure, no close.
    await until(async () => (await page.locator('#chat-list li.own[data-status="delivered"]').count()) === 100, {
      timeout: 30_000,
      message: '100 delivered',
    });
    await progress.waitFor({ state: 'hidden' });
    await page.locator('#announcer', { hasText: 'All queued messages sent.' }).waitFor({ state: 'attached' });
    await raw.waitFrame((f) => f.type === 'message' && f.message === 'burst 100', 30_000);
    assert.deepEqual(raw.frames.filter((f) => f.type === 'message').map((f) => f.message), texts);
    assert.equal(await page.locator('#chat-list li.own[data-status="failed"]').count(), 0);
    assert.equal(await page.locator('.notice').count(), 0, 'no rate_limited or close notice');
    assert.equal(await page.locator('#failures').isHidden(), true);
    assert.equal(await page.locator('#info-client').innerText(), clientId, 'still the first connection');
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'open');
    await raw.close();
    assert.deepEqual(errors, []);
  });
});

test('when the server refuses for its rate anyway, the page waits and sends again; nothing fails', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: ['--publish-rate', '5', '--publish-burst', '2'] }, async ({ server, browser }) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    // A proxy (or an older server) advertises more than the server allows: the page believes it.
    await page.routeWebSocket(/\/ws\/events/, (ws) => {
      const upstream = ws.connectToServer();
      upstream.onMessage((message) => {
        const frame = JSON.parse(String(message));
        const welcome = frame.type === 'batch' ? frame.events.find((/** @type {any} */ e) => e.type === 'welcome') : frame.type === 'welcome' ? frame : null;
        if (welcome) welcome.limits = { ...welcome.limits, publish_rate: 1000, publish_burst: 1000 };
        ws.send(JSON.stringify(frame));
      });
      ws.onMessage((message) => upstream.send(message));
    });
    await page.goto(server.url);
    await waitForState(page, 'open');
    const texts = Array.from({ length: 8 }, (_, i) => `eager ${i + 1}`);
    await burst(page, texts);
    await until(async () => (await page.locator('#chat-list li.own[data-status="delivered"]').count()) === 8, {
      timeout: 30_000,
      message: 'all 8 delivered',
    });
    assert.equal(await page.locator('#chat-list li.own[data-status="failed"]').count(), 0);
    assert.equal(await page.locator('.notice[data-code="close-1008"]').count(), 0);
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'open');
    await context.close();
  });
});

test('failed messages are grouped in one row with "Resend all"', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    /** @type {import('playwright-core').WebSocketRoute[]} */
    const sockets = [];
    let swallow = false;
    await page.routeWebSocket(/\/ws\/events/, (ws) => {
      sockets.push(ws);
      const upstream = ws.connectToServer();
      upstream.onMessage((message) => ws.send(message));
      // While `swallow` is set, publishes are lost on the way (the server never sees them).
      ws.onMessage((message) => {
        if (!swallow) upstream.send(message);
      });
    });
    await page.goto(server.url);
    await waitForState(page, 'open');
    const raw = await rawClient(server.url);

    swallow = true;
    await burst(page, ['lost 1', 'lost 2', 'lost 3']);
    await until(async () => (await page.locator('#chat-list li.own[data-status="pending"]').count()) === 3, { message: '3 pending' });
    // The connection drops; the page resumes, and the server never had them: they failed.
    swallow = false;
    await sockets[0]?.close({ code: 4000, reason: 'dropped by the test' });
    await until(async () => sockets.length === 2, { message: 'the page reconnects' });
    await waitForState(page, 'open');
    const row = page.locator('#failures');
    await row.waitFor({ state: 'visible' });
    assert.match(await row.locator('#failures-text').innerText(), /^3 messages not delivered: Not delivered/);
    assert.equal(await page.locator('#chat-list li.own[data-status="failed"]').count(), 3);
    // One row for all of them, not a box each.
    assert.equal(await page.getByRole('button', { name: 'Resend all' }).count(), 1);
    assert.deepEqual(await seriousViolations(page), [], 'axe-core with the failures row shown');

    await page.getByRole('button', { name: 'Resend all' }).click();
    await row.waitFor({ state: 'hidden' });
    await until(async () => (await page.locator('#chat-list li.own[data-status="delivered"]').count()) === 3, { message: '3 delivered' });
    assert.equal(await page.locator('#chat-list li.own[data-status="failed"]').count(), 0, 'the failed ones were replaced');
    assert.deepEqual(await listTexts(page, '#chat-list', '.own'), ['lost 1', 'lost 2', 'lost 3']);
    for (const text of ['lost 1', 'lost 2', 'lost 3']) await raw.waitFrame((f) => f.type === 'message' && f.message === text);

    // Dismiss: the row goes, the messages stay marked.
    swallow = true;
    await burst(page, ['lost again']);
    await page.locator('#chat-list li.own[data-status="pending"]', { hasText: 'lost again' }).waitFor();
    swallow = false;
    await sockets[1]?.close({ code: 4000, reason: 'dropped by the test' });
    await row.waitFor({ state: 'visible' });
    assert.match(await row.locator('#failures-text').innerText(), /^1 message not delivered/);
    await page.getByRole('button', { name: 'Dismiss', exact: true }).click();
    await row.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('#chat-list li.own[data-status="failed"]', { hasText: 'lost again' }).count(), 1);
    await raw.close();
    await context.close();
  });
});

test('a message over max_message_bytes is refused in the page, before it is sent', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: ['--max-message-bytes', '1000'] }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const input = page.getByLabel('Message', { exact: true });
    await input.fill('x'.repeat(1200));
    await page.locator('#composer-hint.error', { hasText: /Too large: 1,2\d\d bytes; this server accepts at most 1,000/ }).waitFor();
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#send').isDisabled(), true);
    const sentBefore = await page.locator('#m-sent .value').innerText();
    await input.press('Enter');
    assert.equal(await page.locator('#m-sent .value').innerText(), sentBefore);
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'open');
    // Close to the limit, the box shows the size.
    await input.fill('y'.repeat(900));
    await page.locator('#composer-hint', { hasText: /^9\d\d \/ 1,000 bytes$/ }).waitFor();
    assert.deepEqual(errors, []);
  });
});

test('a full server (close 1013) is explained and retried with a countdown', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ args: ['--max-connections', '1'] });
  const browser = await launchBrowser();
  try {
    const first = await openUi(browser, server.url);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(server.url);
    await page.locator('.notice[data-code="close-1013"]', { hasText: 'Server full' }).waitFor();
    await page.locator('#status[data-state="waiting"]').waitFor();
    await page.locator('#reconnect-now').waitFor({ state: 'visible' });
    // Room frees up: the waiting page gets in (reconnect now skips the rest of the countdown).
    await first.page.locator('#toggle-connection').click();
    await first.page.locator('#status[data-state="disconnected"]').waitFor();
    await until(async () => {
      const state = await page.locator('#status').getAttribute('data-state');
      if (state === 'waiting') await page.locator('#reconnect-now').click({ timeout: 1000 }).catch(() => {});
      return state === 'open';
    }, { timeout: 30_000, interval: 200, message: 'the waiting page gets in' });
    await page.locator('.notice[data-code="close-1013"]').waitFor({ state: 'detached' });
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
});
