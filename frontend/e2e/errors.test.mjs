// @ts-check
/** Server refusals are shown clearly: rate limiting, a frame over the size limit, a full server. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TEST_TIMEOUT_MS, launchBrowser, openUi, startServer, until, withServerAndBrowser } from './helpers.mjs';

test('a rate_limited error frame is shown and the refused message is marked', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: ['--publish-rate', '1', '--publish-burst', '1', '--max-message-bytes', '1000'] }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const input = page.getByLabel('Message', { exact: true });
    // Three quickly: the first fits the burst of 1, the next are over the rate.
    for (const text of ['first', 'second', 'third']) {
      await input.fill(text);
      await input.press('Enter');
    }
    const notice = page.locator('.notice[data-code="rate_limited"]');
    await notice.waitFor();
    assert.equal(await notice.getAttribute('role'), 'alert');
    assert.match(await notice.innerText(), /Rate limited: that message was not broadcast\. The server allows 1 message\/s \(bursts of 1\)\./);
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'first' }).waitFor();
    await page.locator('#chat-list li.own[data-status="failed"]', { hasText: 'second' }).waitFor();
    await page.locator('#chat-list li.own[data-status="failed"] .failure', { hasText: 'Rate limited' }).first().waitFor();
    await page.locator('#m-sent .sub', { hasText: /failed/ }).waitFor();

    // The refused message can be put back in the box to try again.
    await page.locator('#chat-list li.own[data-status="failed"]', { hasText: 'second' }).getByRole('button', { name: 'Edit & resend' }).click();
    assert.equal(await input.inputValue(), 'second');

    // A message over the server's max_message_bytes is refused before it is sent (no 1009 close).
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

    // Dismissing the notice removes it.
    await notice.getByRole('button', { name: /Dismiss/ }).click();
    await notice.waitFor({ state: 'detached' });
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
