// The README's front-page screenshot (docs/screenshot-home.png): Ana's inbox in the demo
// community. Run against a server on a `tidings seed --shape demo` store:
//   tidings --data-dir /tmp/demo seed --shape demo
//   tidings serve --data-dir /tmp/demo --listen 127.0.0.1:8080 &
//   TIDINGS_BASE_URL=http://127.0.0.1:8080 node e2e/screenshot.mjs docs/screenshot-home.png
// Environment: TIDINGS_BASE_URL (default http://127.0.0.1:8080), TIDINGS_E2E_CHROMIUM (default
// /usr/bin/chromium). The one argument is where the PNG goes.

import { chromium } from 'playwright-core';

const BASE = process.env.TIDINGS_BASE_URL || 'http://127.0.0.1:8080';
const out = process.argv[2] || 'screenshot-home.png';
const browser = await chromium.launch({
  executablePath: process.env.TIDINGS_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' })).newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${BASE}/login`);
  await page.fill('#login-form input[name=username]', 'ana');
  await page.fill('#login-form input[name=password]', 'demo-password');
  await page.click('#login-form button[type=submit]');
  await page.locator('.card', { hasText: 'Runtime 0.9 is out' }).first().waitFor({ state: 'visible' });
  // Posts and replies (likes are counted on the cards).
  await page.goto(`${BASE}/?kind=major`);
  await page.locator('.card', { hasText: 'The Living Mountain' }).first().waitFor({ state: 'visible' });
  await page.waitForTimeout(500);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
