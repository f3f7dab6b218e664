// The web app's stories (the nine, the extras, the social pages, the account page, search, moderation, conversations and groups, media), driven through Debian's Chromium headless with
// two people in two browser contexts. Run by crates/tidings/tests/web_e2e.rs against a real
// `tidings serve`; environment:
//   TIDINGS_BASE_URL       the server, e.g. http://127.0.0.1:PORT
//   TIDINGS_E2E_ARTIFACTS  where screenshots go (default: ../target/e2e-artifacts)
//   TIDINGS_E2E_SUSPENDED  "name:password" of a suspended account the harness prepared
//   TIDINGS_E2E_CHROMIUM   browser binary (default /usr/bin/chromium)
// Exits non-zero on the first failed story.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = process.env.TIDINGS_BASE_URL || 'http://127.0.0.1:8080';
const SHOTS = process.env.TIDINGS_E2E_ARTIFACTS || path.join(here, '..', 'target', 'e2e-artifacts');
const [SUSPENDED_USER, SUSPENDED_PASS] = (process.env.TIDINGS_E2E_SUSPENDED || 'mallory:correct horse').split(/:(.*)/s);
const PASSWORD = 'correct horse';
const T = 10_000; // per-step timeout: generous for a loaded 2-core machine
mkdirSync(SHOTS, { recursive: true });

// What an XSS attempt would do if it ran; every payload sets a flag we check stays unset.
const XSS = [
  '<img src=x onerror="window.__xss=1">',
  '<script>window.__xss=2</script>',
  '"><svg onload="window.__xss=3">',
  "<a href=\"javascript:window.__xss=4\">click</a>",
  '<iframe srcdoc="<script>parent.__xss=5</script>"></iframe>',
];
const XSS_TEXT = XSS.join(' ');

const started = Date.now();
const pages = {};
const results = [];

async function story(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push([name, 'ok', Date.now() - t0]);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push([name, 'FAILED', Date.now() - t0]);
    for (const [who, page] of Object.entries(pages)) {
      await page.screenshot({ path: path.join(SHOTS, `failed-${who}.png`) }).catch(() => {});
    }
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

/** Resolves once `locator` is visible. */
const visible = (locator, timeout = T) => locator.first().waitFor({ state: 'visible', timeout });
/** Resolves once `locator` is gone. */
const gone = (locator, timeout = T) => locator.first().waitFor({ state: 'detached', timeout });

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

/** Fails the run on page errors, CSP violations, XSS flags and alert dialogs. */
function guard(page, who) {
  page.on('pageerror', (e) => { problems.push(`${who}: page error: ${e.message}`); });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`${who}: ${m.text()}`);
  });
  page.on('dialog', (d) => { problems.push(`${who}: unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });
}
const problems = [];

async function noXss(page) {
  const flag = await page.evaluate(() => window.__xss);
  assert.equal(flag, undefined, 'an XSS payload executed');
}

async function api(token, method, p, body) {
  const res = await fetch(`${BASE}/api/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function tokenOf(page) {
  return page.evaluate(() => localStorage.getItem('tidings.token'));
}

async function signUp(page, username, display) {
  await page.goto(`${BASE}/signup`);
  await page.fill('#signup-form input[name=username]', username);
  if (display) await page.fill('#signup-form input[name=display_name]', display);
  await page.fill('#signup-form input[name=password]', PASSWORD);
  await page.click('#signup-form button[type=submit]');
}

async function logIn(page, username, password = PASSWORD) {
  await page.goto(`${BASE}/login`);
  await page.fill('#login-form input[name=username]', username);
  await page.fill('#login-form input[name=password]', password);
  await page.click('#login-form button[type=submit]');
}

const browser = await chromium.launch({
  executablePath: process.env.TIDINGS_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let exitCode = 0;
try {
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  const ctxB = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  const ana = await ctxA.newPage();
  const bob = await ctxB.newPage();
  ana.setDefaultTimeout(T);
  bob.setDefaultTimeout(T);
  pages.ana = ana;
  pages.bob = bob;
  guard(ana, 'ana');
  guard(bob, 'bob');
  let anaToken;
  let bobToken;
  // The live path the page must use.
  const expectedLive = 'sse';

  await story('1. sign up, log in, log out, session across reloads, clear errors', async () => {
    const res = await fetch(`${BASE}/`);
    const csp = res.headers.get('content-security-policy') || '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    await signUp(ana, 'ana', 'Ana');
    await visible(ana.locator('#inbox-title'));
    anaToken = await tokenOf(ana);
    // Taken username.
    await signUp(bob, 'ana');
    await visible(bob.locator('#auth-error', { hasText: 'taken' }));
    // Bob signs up with a display name that is an XSS payload: it must show as text.
    await signUp(bob, 'bob', '<img src=x onerror="window.__xss=9">Bob');
    await visible(bob.locator('#inbox-title'));
    await bob.reload();
    await visible(bob.locator('#me-link'));
    assert.equal(await bob.locator('#me-link').textContent(), '<img src=x onerror="window.__xss=9">Bob');
    await bob.click('#logout');
    await visible(bob.locator('#login-form'));
    // Wrong password, then a suspended account, then a keyboard-only login.
    await logIn(bob, 'bob', 'not the password');
    await visible(bob.locator('#auth-error', { hasText: 'Wrong username or password' }));
    await logIn(bob, SUSPENDED_USER, SUSPENDED_PASS);
    await visible(bob.locator('#auth-error', { hasText: 'suspended' }));
    await bob.goto(`${BASE}/login`);
    await bob.locator('#login-form input[name=username]').focus();
    await bob.keyboard.type('bob');
    await bob.keyboard.press('Tab');
    await bob.keyboard.type(PASSWORD);
    await bob.keyboard.press('Enter');
    await visible(bob.locator('#inbox-title'));
    bobToken = await tokenOf(bob);
    // The live story runs over the real SSE channel; the page's polling fallback is only for
    // servers without it, and this one has it.
    const stream = await fetch(`${BASE}/api/v1/inbox/stream?access_token=${encodeURIComponent(bobToken)}`);
    assert.equal(stream.status, 200, 'GET /api/v1/inbox/stream');
    assert.match(stream.headers.get('content-type') || '', /text\/event-stream/);
    if (stream.body) await stream.body.cancel().catch(() => {});
    console.log(`     live path under test: ${expectedLive}`);
    await noXss(bob);
  });

  await story('4. create a circle (name, description, visibility, join policy)', async () => {
    for (const [name, display, description, policy] of [
      ['eng', 'Engineering', 'Builds things', 'open'],
      ['crit', 'Design critique', `Approval needed ${XSS_TEXT}`, 'approval'],
    ]) {
      await ana.goto(`${BASE}/circles/new`);
      await ana.fill('#new-circle input[name=name]', name);
      await ana.fill('#new-circle input[name=display_name]', display);
      await ana.fill('#new-circle textarea[name=description]', description);
      await ana.selectOption('#new-circle select[name=visibility]', 'public');
      await ana.selectOption('#new-circle select[name=join_policy]', policy);
      await ana.click('#new-circle button[type=submit]');
      await visible(ana.locator(`.circle-page[data-circle="${name}"] h1`, { hasText: display }));
    }
    await visible(ana.locator('.description', { hasText: '<img src=x onerror="window.__xss=1">' }));
    await noXss(ana);
  });

  await story('3. find circles: search, browse, member counts', async () => {
    await bob.goto(`${BASE}/circles`);
    await visible(bob.locator('.circle-row[data-name=eng]'));
    await visible(bob.locator('.circle-row[data-name=crit]'));
    await bob.fill('#circle-search', 'builds');
    await gone(bob.locator('.circle-row[data-name=crit]'));
    await visible(bob.locator('.circle-row[data-name=eng] .members', { hasText: '1 member' }));
    await shot(bob, 'circles');
    await noXss(bob);
  });

  await story('5. join, request, approve, roles, subscribe with tags, leave, archive', async () => {
    await bob.click('.circle-row[data-name=eng] button.join');
    await visible(bob.locator('.circle-row[data-name=eng] .members', { hasText: '2 members' }));
    await bob.goto(`${BASE}/c/crit`);
    await bob.click('button.join');
    await visible(bob.locator('.badge.pending'));
    await ana.goto(`${BASE}/c/crit?tab=members`);
    await ana.click('.member-row.request[data-username=bob] button.approve');
    await visible(ana.locator('.member-list .member-row[data-username=bob]:not(.request)'));
    await ana.click('.member-row[data-username=bob] button.promote');
    await visible(ana.locator('.member-row[data-username=bob] .badge.role', { hasText: 'moderator' }));
    // Bob subscribes to release@eng through the helper, which shows the expression as typed.
    await bob.goto(`${BASE}/c/eng?tab=subscriptions`);
    await visible(bob.locator('.sub-row[data-expr="*@eng"]'));
    await bob.fill('#sub-tag', 'release');
    assert.equal(await bob.locator('#sub-preview').textContent(), 'release@eng');
    await bob.click('.sub-helper button[type=submit]');
    await visible(bob.locator('.sub-row[data-expr="release@eng"]'));
    // A bad expression comes back with its position.
    await bob.fill('#sub-expr', 'release@@eng');
    await bob.click('.sub-helper button[type=submit]');
    await visible(bob.locator('.sub-helper .error', { hasText: 'character' }));
    await bob.fill('#sub-expr', '');
    // Bob leaves crit; Ana archives it.
    await bob.goto(`${BASE}/c/crit`);
    await bob.click('button.leave');
    await visible(bob.locator('button.join'));
    await ana.goto(`${BASE}/c/crit`);
    await ana.click('#archive');
    await ana.click('#archive');
    await visible(ana.locator('.banner', { hasText: 'archived' }));
    await visible(ana.locator('.badge.archived'));
  });

  let articleId;
  await story('8+2. compose (type, tags, audience, actions) and the inbox live', async () => {
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('#inbox-title'));
    await bob.waitForFunction((mode) => document.documentElement.dataset.live === mode, expectedLive, { timeout: T });
    const before = await bob.evaluate(() => window.scrollY);
    await ana.goto(`${BASE}/compose`);
    await ana.selectOption('#compose-type', 'Article');
    await ana.fill('#compose-title', 'v2 is out');
    await ana.fill('#compose-content', 'What changed in v2, at length.');
    await ana.fill('#compose-url', 'https://blog.example/v2');
    await ana.fill('#compose-tags', 'release, announcement');
    await ana.uncheck('#compose-public');
    await ana.check('#compose input[name=circle][value=eng]');
    await ana.fill('#compose-people', 'bob');
    await ana.click('#add-action');
    await ana.fill('.action-row input[name=action-name]', 'read');
    await ana.fill('.action-row input[name=action-url]', 'https://blog.example/v2');
    await ana.click('#publish');
    await visible(ana.locator('#inbox-title'));
    // Bob's inbox was empty, so the item shows at once (no bar over "Nothing here yet"), and
    // the page did not jump. Items that arrive over a list wait behind the bar (the XSS story).
    const card = bob.locator('.card', { hasText: 'v2 is out' });
    await visible(card);
    assert.equal(await bob.locator('#new-bar').isHidden(), true);
    assert.equal(await bob.evaluate(() => window.scrollY), before);
    articleId = await card.first().getAttribute('data-id');
    await visible(card.locator('tidings-object-article h3', { hasText: 'v2 is out' }));
    await visible(card.locator('.chip.tag', { hasText: '#release' }));
    await visible(card.locator('button.action[data-action=read]'));
    await card.locator('.why summary').click();
    await visible(card.locator('.why p', { hasText: 'addressed to you' }));
  });

  await story('2. inbox filters (kind, circles, tags) and infinite scroll by cursor', async () => {
    // 25 more posts to eng through the API, so the inbox has more than one page.
    for (let i = 1; i <= 25; i++) {
      await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: `bulk note ${i}` }, to: ['circle:eng'], tag: [i % 2 ? 'odd' : 'even'] });
    }
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('.card', { hasText: 'bulk note 25' }));
    assert.equal(await bob.locator('.card').count(), 20);
    await bob.locator('.load-more').scrollIntoViewIfNeeded();
    await visible(bob.locator('.card', { hasText: 'v2 is out' }));
    assert.equal(await bob.locator('.card').count(), 26);
    await bob.selectOption('#filter-kind', 'direct');
    await bob.waitForURL(/kind=direct/);
    await visible(bob.locator('.card', { hasText: 'v2 is out' }));
    await gone(bob.locator('.card', { hasText: 'bulk note' }));
    await bob.goto(`${BASE}/?tags=even&circles=eng`);
    await visible(bob.locator('.card', { hasText: 'bulk note 24' }));
    assert.equal(await bob.locator('.card', { hasText: 'bulk note 25' }).count(), 0);
    await visible(bob.locator('#filters input[name=circle][value=eng]:checked'));
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('.card', { hasText: 'bulk note 25' }));
    await shot(bob, 'home');
  });

  await story('7+9. see a message: templates, thread, tags, why, versions; trigger an action', async () => {
    await bob.goto(`${BASE}/a/${articleId}`);
    await visible(bob.locator('tidings-object-article h3', { hasText: 'v2 is out' }));
    // Action: recorded through the API, then the reader opens.
    const [resp] = await Promise.all([
      bob.waitForResponse((r) => r.url().includes(`/activities/${articleId}/actions/read`)),
      bob.click('button.action[data-action=read]'),
    ]);
    assert.equal(resp.status(), 200);
    await visible(bob.locator('dialog.reader h2', { hasText: 'v2 is out' }));
    assert.equal(await bob.locator('dialog.reader a.button').getAttribute('href'), 'https://blog.example/v2');
    await shot(bob, 'reader');
    await bob.click('dialog.reader .reader-head button');
    await gone(bob.locator('dialog.reader'));
    // Reply as a thread.
    await bob.fill('#reply-form textarea', `Congrats! ${XSS_TEXT}`);
    await bob.click('#reply-form button[type=submit]');
    await visible(bob.locator('.thread .card', { hasText: 'Congrats!' }));
    await visible(bob.locator('.thread .card .content', { hasText: '<script>window.__xss=2</script>' }));
    // Ana edits the article: the edited badge and both versions show.
    await api(anaToken, 'POST', '/outbox', { type: 'Update', object: { id: articleId, type: 'Article', name: 'v2 is out (fixed)', content: 'Corrected.', url: 'https://blog.example/v2' } });
    await bob.reload();
    await visible(bob.locator('.badge.edited'));
    await visible(bob.locator('tidings-object-article h3', { hasText: 'v2 is out (fixed)' }));
    await bob.click('.versions summary');
    await visible(bob.locator('.version-list li', { hasText: 'Update' }));
    assert.equal(await bob.locator('.version-list li').count(), 2);
    await shot(bob, 'message');
    await noXss(bob);
    // Each object type has its own template, custom types included.
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Image', name: 'Whiteboard', url: 'https://photos.example/wb.jpg' }, to: ['circle:eng'] });
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Link', name: 'Spec', url: 'https://spec.example/' }, to: ['circle:eng'] });
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Poll', question: 'Ship Friday?', options: ['yes', 'no'] }, to: ['circle:eng'] });
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'plain note' }, to: ['circle:eng'] });
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('tidings-object-image img[src="https://photos.example/wb.jpg"]'));
    await visible(bob.locator('tidings-object-link a[href="https://spec.example/"]', { hasText: 'Spec' }));
    await visible(bob.locator('tidings-object-poll .title', { hasText: 'Poll: Ship Friday?' }));
    await visible(bob.locator('tidings-object-poll li', { hasText: 'yes' }));
    await visible(bob.locator('tidings-object-note .content', { hasText: 'plain note' }));
    await shot(bob, 'home-types');
  });

  await story('6. a circle page: stream, members, my subscriptions', async () => {
    await bob.goto(`${BASE}/c/eng`);
    await visible(bob.locator('.tab-panel .card', { hasText: 'bulk note 25' }));
    await bob.click('.tab-members');
    await visible(bob.locator('.member-row[data-username=ana] .badge.role', { hasText: 'owner' }));
    await visible(bob.locator('.member-row[data-username=bob]'));
    await bob.click('.tab-subscriptions');
    await visible(bob.locator('.sub-row[data-expr="release@eng"]'));
    await shot(bob, 'circle');
  });

  await story('XSS corpus: posted as content, tags and title, shown as text, never run', async () => {
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('.card', { hasText: 'bulk note 25' }));
    await bob.waitForFunction((mode) => document.documentElement.dataset.live === mode, expectedLive, { timeout: T });
    await ana.goto(`${BASE}/compose`);
    await ana.fill('#compose-title', XSS[2]);
    await ana.fill('#compose-content', XSS_TEXT);
    await ana.check('#compose input[name=circle][value=eng]');
    await ana.click('#publish');
    await visible(ana.locator('#inbox-title'));
    // Bob's list is not empty: the item waits behind the bar instead of moving the page.
    await visible(bob.locator('#new-bar', { hasText: '1 new' }));
    await shot(bob, 'home-new-bar');
    await bob.click('#new-bar');
    // The reply of story 7 carries the corpus too; this card is the one with the title.
    const card = bob.locator('.card', { has: bob.locator('tidings-object-note .title'), hasText: '<script>window.__xss=2</script>' });
    await visible(card);
    assert.equal(await card.locator('tidings-object-note .title').first().textContent(), XSS[2]);
    assert.equal(await card.locator('tidings-object-note .content').first().textContent(), XSS_TEXT);
    assert.equal(await card.locator('img, script, svg, iframe').count(), 0);
    await bob.reload();
    await visible(bob.locator('.card', { hasText: '<script>window.__xss=2</script>' }));
    await noXss(bob);
    await noXss(ana);
  });

  await story('extras: hide from my inbox, retract my own, profile with outbox', async () => {
    // Hide: gone from Bob's inbox, still in the circle's stream.
    await bob.goto(`${BASE}/`);
    const note = bob.locator('.card', { hasText: 'plain note' });
    await visible(note);
    await note.locator('button.hide').click();
    await gone(bob.locator('.card', { hasText: 'plain note' }));
    await bob.reload();
    await visible(bob.locator('.card', { hasText: 'bulk note 25' }));
    assert.equal(await bob.locator('.card', { hasText: 'plain note' }).count(), 0);
    await bob.goto(`${BASE}/c/eng`);
    await visible(bob.locator('.card', { hasText: 'plain note' }));
    // Retract: Ana's own message becomes a tombstone everywhere.
    await ana.goto(`${BASE}/a/${articleId}`);
    await ana.click('button.retract');
    await ana.click('button.retract');
    await visible(ana.locator('.tombstone'));
    await bob.goto(`${BASE}/a/${articleId}`);
    await visible(bob.locator('h1', { hasText: 'Retracted' }));
    // Profile: who, circles, outbox.
    await bob.goto(`${BASE}/u/ana`);
    await visible(bob.locator('h1', { hasText: 'Ana' }));
    await visible(bob.locator('.chip.circle', { hasText: 'eng' }));
    await visible(bob.locator('.outbox .card', { hasText: 'bulk note 25' }));
    await shot(bob, 'profile');
  });

  await story('phone width, keyboard and dark mode', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true });
    const page = await phone.newPage();
    page.setDefaultTimeout(T);
    guard(page, 'phone');
    await logIn(page, 'bob');
    await visible(page.locator('.card', { hasText: 'bulk note 25' }));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page overflows the phone width by ${overflow}px`);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 150, `dark mode background is ${bg}`);
    await shot(page, 'home-phone-dark');
    // Keyboard: the skip link is the first stop and lands on the content; the next stop is in it.
    await page.reload();
    await visible(page.locator('.card', { hasText: 'bulk note 25' }));
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    assert.ok(await page.evaluate(() => document.getElementById('main').contains(document.activeElement)), 'Tab after the skip link stays in the content');
    await phone.close();
  });

  /** Ana's unseen-notifications badge as a number (0 when hidden). */
  const badgeOf = async (page) => Number(await page.locator('#notif-link').getAttribute('data-unseen'));
  /** Waits until Ana's badge shows `n`, without any reload of her page. */
  const badgeReaches = async (page, n) => {
    await page.waitForFunction((want) => document.getElementById('notif-link')?.dataset.unseen === String(want), n, { timeout: T });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was reloaded');
    if (n > 0) assert.equal(await page.locator('#notif-badge').textContent(), String(n));
    else assert.equal(await page.locator('#notif-badge').isHidden(), true);
  };
  // Every GET /api/v1/feeds Ana's pages make: the badge must not need them once the page is up.
  let anaFeedsReads = 0;
  ana.on('request', (r) => { if (r.method() === 'GET' && new URL(r.url()).pathname === '/api/v1/feeds') anaFeedsReads += 1; });
  /** Ana's home page, live, marked so a reload would show. */
  const anaWatchesHome = async () => {
    await ana.goto(`${BASE}/`);
    await visible(ana.locator('#inbox-title'));
    await ana.waitForFunction((mode) => document.documentElement.dataset.live === mode, expectedLive, { timeout: T });
    await ana.evaluate(() => { window.__sameDocument = true; });
  };
  /** A real <button> with a name a screen reader can say. */
  const isLabelledButton = async (locator, name) => {
    const el = locator.first();
    assert.equal(await el.evaluate((b) => b.tagName), 'BUTTON');
    const label = (await el.getAttribute('aria-label')) || (await el.textContent());
    assert.match(label, name);
  };

  let likedId;
  await story('10. follow from a profile: Follow / Unfollow, counts, followers and following lists, badge live', async () => {
    // Ana starts from zero unseen notifications, watching her inbox.
    await ana.goto(`${BASE}/notifications`);
    await visible(ana.locator('#notif-title'));
    await ana.waitForFunction(() => document.getElementById('notif-link').dataset.unseen === '0', null, { timeout: T });
    await anaWatchesHome();
    assert.equal(await badgeOf(ana), 0);
    // Bob follows Ana with the keyboard.
    await bob.goto(`${BASE}/u/ana`);
    const follow = bob.locator('#follow-button');
    await visible(bob.locator('#follow-button', { hasText: /^Follow$/ }));
    await isLabelledButton(follow, /^Follow Ana$/);
    await visible(bob.locator('.followers-count', { hasText: '0 followers' }));
    await follow.focus();
    await bob.keyboard.press('Enter');
    await visible(bob.locator('#follow-button', { hasText: 'Unfollow' }));
    await visible(bob.locator('.followers-count', { hasText: '1 follower' }));
    const feedsReadsBefore = anaFeedsReads;
    await badgeReaches(ana, 1);
    // Ana's other device marks her notifications seen: this page's badge follows.
    await api(anaToken, 'POST', '/feeds/notifications/seen');
    await badgeReaches(ana, 0);
    // Unfollow takes the follow (and its notification) back; following again brings one back.
    await bob.click('#follow-button');
    await visible(bob.locator('#follow-button', { hasText: /^Follow$/ }));
    await visible(bob.locator('.followers-count', { hasText: '0 followers' }));
    await bob.click('#follow-button');
    await visible(bob.locator('#follow-button', { hasText: 'Unfollow' }));
    await badgeReaches(ana, 1);
    // All of that came as `counts` events on the page's one live channel, not by re-reading.
    assert.equal(await ana.evaluate(() => document.documentElement.dataset.counts), 'sse');
    assert.equal(anaFeedsReads, feedsReadsBefore, 'the badge re-read GET /feeds instead of using the live counts');
    // After a reload the button knows Bob follows Ana.
    await bob.reload();
    await visible(bob.locator('#follow-button', { hasText: 'Unfollow' }));
    // Ana's followers list shows Bob (his display name as text), linking to his profile.
    await bob.click('.followers-count');
    await bob.waitForURL(/\/u\/ana\?tab=followers$/);
    const row = bob.locator('.people-list .person-row[data-username=bob]');
    await visible(row);
    assert.equal(await row.locator('a.author').textContent(), '<img src=x onerror="window.__xss=9">Bob');
    await row.locator('a.author').click();
    await bob.waitForURL(/\/u\/bob$/);
    await visible(bob.locator('.following-count', { hasText: '1 following' }));
    await bob.click('.tab-following');
    await visible(bob.locator('.people-list .person-row[data-username=ana] a.author', { hasText: 'Ana' }));
    await noXss(bob);
    // Ana sees her follower too.
    await ana.goto(`${BASE}/u/ana?tab=followers`);
    await visible(ana.locator('.person-row[data-username=bob]'));
    assert.equal(await ana.locator('#follow-button').count(), 0, 'no Follow button on my own profile');
    await shot(ana, 'profile-followers');
    // On Bob's profile Ana is offered Follow, and told Bob follows her.
    await ana.goto(`${BASE}/u/bob`);
    await visible(ana.locator('#follow-button', { hasText: /^Follow$/ }));
    await visible(ana.locator('.follows-you', { hasText: 'Follows you' }));
    await noXss(ana);
  });

  await story('11. like and share a post: counts, toggling, unlike, and the author\'s badge live', async () => {
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'a post to like' }, to: ['followers'] });
    await ana.goto(`${BASE}/notifications`);
    await visible(ana.locator('#notif-title'));
    await anaWatchesHome();
    await badgeReaches(ana, 0);
    await bob.goto(`${BASE}/`);
    const card = bob.locator('.card', { hasText: 'a post to like' });
    await visible(card);
    likedId = await card.first().getAttribute('data-id');
    const like = card.locator('button.reaction.like');
    const share = card.locator('button.reaction.share');
    await isLabelledButton(like, /^Like/);
    await isLabelledButton(share, /^Share/);
    assert.equal(await like.getAttribute('aria-pressed'), 'false');
    assert.equal(await like.locator('.count').textContent(), '0');
    // Like with the keyboard, share with a click.
    await like.focus();
    await bob.keyboard.press('Space');
    await visible(card.locator('button.like[aria-pressed=true] .count', { hasText: '1' }));
    await badgeReaches(ana, 1);
    await share.click();
    await visible(card.locator('button.share[aria-pressed=true] .count', { hasText: '1' }));
    await badgeReaches(ana, 2);
    // The message page shows the same state, also after a reload.
    await bob.goto(`${BASE}/a/${likedId}`);
    const main = bob.locator('.message-page > .card');
    await visible(main.locator('button.like[aria-pressed=true] .count', { hasText: '1' }));
    await visible(main.locator('button.share[aria-pressed=true] .count', { hasText: '1' }));
    // Unlike, then like again: the count follows.
    await main.locator('button.like').click();
    await visible(main.locator('button.like[aria-pressed=false] .count', { hasText: '0' }));
    await badgeReaches(ana, 1);
    await main.locator('button.like').click();
    await visible(main.locator('button.like[aria-pressed=true] .count', { hasText: '1' }));
    await badgeReaches(ana, 2);
    // Unshare on this page, then share again from another device: this page still offers
    // Share, and the server's "already shared" sets it right with the real count.
    await main.locator('button.share').click();
    await visible(main.locator('button.share[aria-pressed=false] .count', { hasText: '0' }));
    await badgeReaches(ana, 1);
    await api(bobToken, 'POST', `/activities/${likedId}/share`);
    await main.locator('button.share').click();
    await visible(main.locator('button.share[aria-pressed=true] .count', { hasText: '1' }));
    // A reply raises the badge too.
    await bob.fill('#reply-form textarea', 'Liked and shared!');
    await bob.click('#reply-form button[type=submit]');
    await visible(bob.locator('.thread .card', { hasText: 'Liked and shared!' }));
    await badgeReaches(ana, 3);
    await shot(bob, 'message-reactions');
    // Ana's inbox got the reactions too, behind its bar; a Like reads as one.
    await visible(ana.locator('#new-bar'));
    await ana.click('#new-bar');
    const liked = ana.locator('.card', { has: ana.locator('.target a.what', { hasText: 'note “a post to like”' }), hasText: 'liked' });
    await visible(liked);
    assert.equal(await liked.first().locator('button.reaction').count(), 0, 'a Like is not itself liked');
    await shot(ana, 'home-badge');
  });

  await story('12. notifications: sentences, seen on open (badge to 0), read per item and all, older pages', async () => {
    // Ana opens her notifications from the header, with the keyboard.
    await ana.locator('#notif-link').focus();
    await ana.keyboard.press('Enter');
    await visible(ana.locator('#notif-title'));
    const notice = (reason, text) => ana.locator(`.notice[data-reason=${reason}]`, { hasText: text });
    await visible(notice('like', 'liked your note “a post to like”'));
    await visible(notice('share', 'shared your note “a post to like”'));
    await visible(notice('reply', 'replied to your note “a post to like”'));
    await visible(notice('reply', 'Liked and shared!'));
    await visible(notice('follow', 'followed you.'));
    // Names are links to people, shown as text; the message is a link to it.
    const like = notice('like', 'a post to like').first();
    assert.equal(await like.locator('a.who').textContent(), '<img src=x onerror="window.__xss=9">Bob');
    assert.equal(await like.locator('a.who').getAttribute('href'), '/u/bob');
    assert.equal(await like.locator('a.what').getAttribute('href'), `/a/${likedId}`);
    // Opening the page marked everything seen: the badge is 0, here and after a reload.
    await badgeReaches(ana, 0);
    await shot(ana, 'notifications');
    await ana.reload();
    await visible(ana.locator('.notice'));
    assert.equal(await badgeOf(ana), 0);
    // Seen is not read: the newest ones are still unread until read, one or all.
    const unreadBefore = await ana.locator('.notice.unread').count();
    assert.ok(unreadBefore >= 4, `${unreadBefore} unread`);
    await isLabelledButton(ana.locator('.notice button.mark-read'), /^Mark read: this notification/);
    await ana.locator('.notice').nth(1).locator('button.mark-read').click();
    // The read marker covers that item and everything older: only the newest stays unread.
    await ana.waitForFunction(() => document.querySelectorAll('.notice.unread').length === 1, null, { timeout: T });
    assert.equal(await ana.locator('.notice').first().getAttribute('class'), 'notice unread');
    await isLabelledButton(ana.locator('#mark-all-read'), /Mark all read/);
    await ana.click('#mark-all-read');
    await gone(ana.locator('.notice.unread'));
    await ana.reload();
    await visible(ana.locator('.notice'));
    assert.equal(await ana.locator('.notice.unread').count(), 0);
    // More than a page: Bob likes 21 more posts; older notifications load as Ana scrolls.
    for (let i = 1; i <= 21; i++) {
      const post = await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: `likeable ${i}` }, to: ['followers'] });
      await api(bobToken, 'POST', `/activities/${post.id}/like`);
    }
    await ana.goto(`${BASE}/notifications`);
    await visible(notice('like', 'likeable 21'));
    await ana.evaluate(() => { window.__sameDocument = true; });
    assert.equal(await ana.locator('.notice').count(), 20);
    await ana.locator('.load-more').scrollIntoViewIfNeeded();
    await visible(notice('follow', 'followed you.'));
    assert.ok(await ana.locator('.notice').count() > 25);
    // A notification that arrives while the page is open waits behind a bar.
    const late = await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'liked while watching' }, to: ['followers'] });
    await api(bobToken, 'POST', `/activities/${late.id}/like`);
    await visible(ana.locator('#notif-new-bar', { hasText: '1 new notification' }));
    await badgeReaches(ana, 1);
    await ana.click('#notif-new-bar');
    await visible(notice('like', 'liked while watching'));
    await badgeReaches(ana, 0);
    // Opening one goes to the message.
    await notice('like', 'likeable 21').locator('a.what').click();
    await visible(ana.locator('.message-page .card', { hasText: 'likeable 21' }));
    await noXss(ana);
  });

  await story('13. the social pages at phone width in dark mode: profile lists, reactions, notifications', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true });
    const page = await phone.newPage();
    page.setDefaultTimeout(T);
    guard(page, 'phone-social');
    // Whatever the earlier stories left, Bob follows Ana here (409 if he already does).
    await api(bobToken, 'POST', '/users/ana/follow').catch(() => {});
    await logIn(page, 'ana');
    await visible(page.locator('#inbox-title'));
    const fits = async (what) => {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${what} overflows the phone width by ${overflow}px`);
    };
    await page.goto(`${BASE}/u/ana?tab=followers`);
    await visible(page.locator('.person-row[data-username=bob]'));
    await fits('the followers list');
    await page.goto(`${BASE}/notifications`);
    await visible(page.locator('#notif-title'));
    await visible(page.locator('.notice').first());
    await fits('the notifications page');
    await shot(page, 'notifications-phone-dark');
    await page.goto(`${BASE}/u/bob`);
    await visible(page.locator('#follow-button'));
    await fits('a profile with its Follow button');
    await page.goto(`${BASE}/u/ana`);
    await visible(page.locator('.outbox .reactions button.like').first());
    await fits('an outbox with reaction buttons');
    await noXss(page);
    await phone.close();
  });

  await story('14. account: two devices, sign one out from the other, change the password, delete the account', async () => {
    const laptopCtx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const phoneCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const laptop = await laptopCtx.newPage();
    const phone = await phoneCtx.newPage();
    for (const [who, page] of [['cy-laptop', laptop], ['cy-phone', phone]]) {
      page.setDefaultTimeout(T);
      guard(page, who);
      pages[who] = page;
    }
    await signUp(laptop, 'cy', 'Cy');
    await visible(laptop.locator('#inbox-title'));
    await logIn(phone, 'cy');
    await visible(phone.locator('#inbox-title'));
    // The phone sees both devices, itself marked.
    await phone.click('#account-link');
    await visible(phone.locator('#account-title'));
    await visible(phone.locator('#devices .device'));
    assert.equal(await phone.locator('#devices .device').count(), 2);
    assert.equal(await phone.locator('#devices .device[data-current=true] .badge', { hasText: 'This device' }).count(), 1);
    await shot(phone, 'account-devices-phone');
    // It signs the laptop out; the laptop is sent to the login page on its next request.
    await phone.locator('#devices .device[data-current=false] button.sign-out').click();
    await gone(phone.locator('#devices .device[data-current=false]'));
    assert.equal(await phone.locator('#devices .device').count(), 1);
    await laptop.reload();
    await visible(laptop.locator('#login-form'));
    await logIn(laptop, 'cy');
    await visible(laptop.locator('#inbox-title'));
    // A wrong current password is refused and changes nothing; the right one signs the laptop out.
    await phone.fill('#password-form input[name=current_password]', 'not my password');
    await phone.fill('#password-form input[name=new_password]', 'battery staple');
    await phone.click('#password-form button[type=submit]');
    await visible(phone.locator('#password-form .error', { hasText: 'not your current password' }));
    await laptop.click('#account-link');
    await visible(laptop.locator('#account-title'));
    await phone.fill('#password-form input[name=current_password]', PASSWORD);
    await phone.fill('#password-form input[name=new_password]', 'battery staple');
    await phone.click('#password-form button[type=submit]');
    await visible(phone.locator('.toast', { hasText: '1 other device was signed out' }));
    // The laptop's live channel is closed at once: it lands on the login page unprompted.
    await visible(laptop.locator('#login-form'));
    await logIn(laptop, 'cy');
    await visible(laptop.locator('#auth-error', { hasText: 'Wrong username or password' }));
    await logIn(laptop, 'cy', 'battery staple');
    await visible(laptop.locator('#inbox-title'));
    // The phone deletes the account: both devices are out, and the name cannot log in again.
    await phone.reload();
    await visible(phone.locator('#delete-account-form'));
    await phone.fill('#delete-account-form input[name=password]', 'battery staple');
    await phone.click('#delete-account-form button[type=submit]');
    await visible(phone.locator('#login-form'));
    await visible(laptop.locator('#login-form'));
    await logIn(phone, 'cy', 'battery staple');
    await visible(phone.locator('#auth-error', { hasText: 'Wrong username or password' }));
    await noXss(phone);
    delete pages['cy-laptop'];
    delete pages['cy-phone'];
    await laptopCtx.close();
    await phoneCtx.close();
  });

  await story('15. an empty inbox shows its first item at once; a follow names its person once; no frame on the main column after navigating', async () => {
    const deeCtx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const dee = await deeCtx.newPage();
    dee.setDefaultTimeout(T);
    guard(dee, 'dee');
    pages.dee = dee;
    await signUp(dee, 'dee', 'Dee');
    await visible(dee.locator('#inbox-title'));
    await visible(dee.locator('.empty', { hasText: 'Nothing here yet' }));
    await dee.waitForFunction((mode) => document.documentElement.dataset.live === mode, expectedLive, { timeout: T });
    // Bob follows Dee: the Follow arrives in her empty inbox as a card, not behind a "1 new" bar.
    await api(bobToken, 'POST', '/users/dee/follow');
    const card = dee.locator('.card', { hasText: 'followed' });
    await visible(card);
    assert.equal(await dee.locator('#new-bar').isHidden(), true, 'no "1 new" bar over an empty inbox');
    assert.equal(await dee.locator('.empty').count(), 0, 'the empty note is gone');
    assert.equal(await card.locator('.chip.person', { hasText: '@dee' }).count(), 1, 'the followed person is shown once');
    await shot(dee, 'home-first-item');
    // After an in-app navigation the main column has the focus (screen readers start at the new
    // content) but wears no focus frame: it is not a control.
    await dee.click('#nav a[href="/circles"]');
    await dee.waitForFunction(() => document.activeElement && document.activeElement.id === 'main', null, { timeout: T });
    assert.equal(await dee.evaluate(() => getComputedStyle(document.getElementById('main')).outlineStyle), 'none');
    await noXss(dee);
    delete pages.dee;
    await deeCtx.close();
  });

  await story('16. search: the header box, highlights as text, filters, type-ahead; a private post stays private', async () => {
    // Ana posts in public (with markup in it, which must show as text) and to a private circle.
    await api(anaToken, 'POST', '/circles', { name: 'vault', description: 'private things', visibility: 'private', join_policy: 'invite' });
    await api(anaToken, 'POST', '/outbox?wait=routed', {
      object: { type: 'Note', content: `Zebrafish <b>migration</b> notes ${XSS[0]}` }, to: ['public'], tag: ['zoology'],
    });
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'zebrafish secret plans' }, to: ['circle:vault'] });
    // Bob finds the public one from the header's search box, the word marked, the rest as text.
    await bob.goto(`${BASE}/`);
    await bob.fill('#header-search', 'zebrafish');
    await bob.press('#header-search', 'Enter');
    await visible(bob.locator('#search-results .result .snippet mark', { hasText: 'Zebrafish' }));
    await visible(bob.locator('#search-results .snippet', { hasText: '<b>migration</b>' }));
    assert.equal(await bob.locator('#search-results .snippet b, #search-results .snippet img').count(), 0);
    assert.equal(await bob.locator('#search-results .result').count(), 1, 'the private post is not found by an outsider');
    // The private post's own words find nothing for him.
    await bob.fill('#search-q', 'secret plans ');
    await visible(bob.locator('#search-status', { hasText: 'No posts match' }));
    await shot(bob, 'search-outsider');
    // Ana, a member, finds both while typing a prefix; a tag filter narrows to one.
    await ana.goto(`${BASE}/search?q=zebra`);
    await visible(ana.locator('#search-results .result .snippet mark', { hasText: 'zebrafish' }));
    assert.equal(await ana.locator('#search-results .result').count(), 2);
    await ana.fill('#search-tag', 'zoology');
    await ana.click('#search-form button[type=submit]');
    await visible(ana.locator('#search-results .result .snippet', { hasText: 'migration' }));
    // The filtered list replaces the unfiltered one (which also shows "migration").
    await gone(ana.locator('#search-results .result', { hasText: 'secret plans' }));
    assert.equal(await ana.locator('#search-results .result').count(), 1);
    await shot(ana, 'search');
    // People and circles.
    await bob.goto(`${BASE}/search?type=people&q=an`);
    await visible(bob.locator('#search-results article[data-user=ana] mark'));
    await bob.goto(`${BASE}/search?type=circles&q=vault`);
    await visible(bob.locator('#search-status', { hasText: 'No circles match' }));
    await noXss(ana);
    await noXss(bob);
  });

  await story('17. save a search as a subscription: a new match arrives live with its reason', async () => {
    // Bob searches, then saves the search from the results page.
    await bob.goto(`${BASE}/search?q=${encodeURIComponent('heron sighting')}`);
    await visible(bob.locator('#search-status', { hasText: 'No posts match' }));
    await bob.click('#search-save');
    await visible(bob.locator('#search-saved', { hasText: 'Saved "heron sighting"' }));
    // His inbox, live; Ana (in her own context) posts a match.
    await bob.goto(`${BASE}/`);
    await bob.waitForFunction((mode) => document.documentElement.dataset.live === mode, expectedLive, { timeout: T });
    await api(anaToken, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'First heron sighting of the year, by the old mill' }, to: ['public'] });
    const bar = bob.locator('#new-bar');
    await bar.or(bob.locator('.card', { hasText: 'old mill' })).first().waitFor({ timeout: T });
    if (await bar.isVisible()) await bar.click();
    const card = bob.locator('.card', { hasText: 'old mill' });
    await visible(card.locator('.via-saved', { hasText: 'Matched your saved search "heron sighting"' }));
    await shot(bob, 'saved-search');
    await noXss(bob);
  });

  await story('18. report a post, and resolve it as the circle\'s moderator in another context', async () => {
    // Carl (made through the API) posts spam to Ana's circle; Bob, a member, reports it.
    await fetch(`${BASE}/api/v1/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'carl', password: PASSWORD }) });
    const carl = await (await fetch(`${BASE}/api/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'carl', password: PASSWORD }) })).json();
    await api(anaToken, 'POST', '/circles', { name: 'allotment', description: 'growing things', visibility: 'public', join_policy: 'open' });
    await api(bobToken, 'PUT', '/circles/allotment/members/bob');
    await api(carl.token, 'PUT', '/circles/allotment/members/carl');
    const spam = await api(carl.token, 'POST', '/outbox?wait=routed', { object: { type: 'Note', content: 'Cheap seeds, click my link' }, to: ['circle:allotment'] });
    await bob.goto(`${BASE}/c/allotment`);
    const card = bob.locator(`article.card[data-id="${spam.id}"]`);
    await visible(card);
    // No queue for members.
    assert.equal(await bob.locator('.tab-reports').count(), 0);
    await card.locator('button.report-open').click();
    await card.locator('select[name=reason]').selectOption('spam');
    await card.locator('input[name=comment]').fill('third time this week');
    await card.locator('.report-form button[type=submit]').click();
    await visible(card.locator('.reported'));
    await shot(bob, 'report-sent');
    // Ana opens the queue: the post, Bob's report with his comment, Carl's record; she hides it.
    await ana.goto(`${BASE}/c/allotment?tab=reports`);
    const item = ana.locator(`article.report-item[data-id="${spam.id}"]`);
    await visible(item.locator('.reporter', { hasText: '@bob' }));
    await visible(item.locator('q', { hasText: 'third time this week' }));
    await item.locator('input[name=reason]').fill('spam');
    await shot(ana, 'report-queue');
    await item.locator('button[data-decision=hide]').click();
    await visible(ana.locator('.resolved', { hasText: 'hide' }));
    // Bob's view: the post is gone from the circle, and the public log says who hid it and why,
    // without naming him as the reporter.
    await bob.goto(`${BASE}/c/allotment`);
    await visible(bob.locator('.empty, article.card').first());
    assert.equal(await bob.locator(`article.card[data-id="${spam.id}"]`).count(), 0);
    await bob.goto(`${BASE}/c/allotment?tab=log`);
    await visible(bob.locator('.modlog li[data-action=hide]', { hasText: 'by @ana' }));
    await visible(bob.locator('.modlog li[data-action=report]', { hasText: 'by a member' }));
    assert.equal(await bob.locator('.modlog', { hasText: '@bob' }).count(), 0);
    assert.equal(await bob.locator('.modlog', { hasText: '[object' }).count(), 0, 'times render as text');
    await shot(bob, 'moderation-log');
  });

  await story('19. a conversation between two people, live both ways, with unread counts', async () => {
    await ana.goto(`${BASE}/conversations`);
    await visible(ana.locator('#conversations'));
    await ana.fill('#new-message-to', 'bob');
    await ana.fill('#new-message-text', 'Lunch at noon? <b>bold?</b>');
    await ana.click('#new-message-send');
    await ana.waitForURL(/\/m\/cv_[0-9a-f]{32}$/);
    const url = ana.url();
    await visible(ana.locator('#chat-log .bubble.mine .content', { hasText: 'Lunch at noon? <b>bold?</b>' }));
    // Bob's list shows the conversation with one unread message; opening it reads it.
    await bob.goto(`${BASE}/conversations`);
    const row = bob.locator('.conversation-row', { hasText: 'ana' });
    await visible(row.locator('.unread-count', { hasText: '1' }));
    await row.locator('a').click();
    await bob.waitForURL(url);
    await visible(bob.locator('#chat-log .bubble:not(.mine) .content', { hasText: 'Lunch at noon?' }));
    // Both views stay open: each message reaches the other over the one push channel.
    await ana.fill('#chat-text', 'The usual place');
    await ana.click('#chat-send');
    await visible(bob.locator('#chat-log .bubble:not(.mine) .content', { hasText: 'The usual place' }));
    await bob.fill('#chat-text', 'See you there');
    await bob.click('#chat-send');
    await visible(ana.locator('#chat-log .bubble:not(.mine) .content', { hasText: 'See you there' }));
    assert.equal(await bob.evaluate(() => document.documentElement.dataset.live), expectedLive);
    assert.equal(await ana.locator('#chat-log .bubble').count(), 3);
    assert.ok(!(await ana.locator('#chat').textContent()).includes('[object'), 'times are shown as text');
    await visible(ana.locator('#chat-log .bubble time', { hasText: 'just now' }));
    await shot(ana, 'conversation');
    // Messages read while open: nothing unread in Ana's list.
    await ana.goto(`${BASE}/conversations`);
    await visible(ana.locator('.conversation-row', { hasText: 'bob' }));
    assert.equal(await ana.locator('.conversation-row .unread-count').count(), 0);
    await noXss(ana);
    await noXss(bob);
  });

  await story('20. a group as the audience: chosen in the composer, received by its members', async () => {
    await api(anaToken, 'POST', '/groups', { name: 'lunch', members: ['bob'] });
    await ana.goto(`${BASE}/compose`);
    await ana.fill('#compose-content', 'Friday lunch for the group');
    await ana.uncheck('#compose-public');
    const box = ana.locator('input[name=group][value="group:lunch"]');
    await visible(box);
    await box.check();
    await shot(ana, 'compose-group');
    await ana.click('#publish');
    await ana.waitForURL(`${BASE}/`);
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('article', { hasText: 'Friday lunch for the group' }));
    const inbox = await api(bobToken, 'GET', '/inbox?from=group:lunch').catch(() => null);
    assert.equal(inbox, null, 'the group is Ana\'s: Bob cannot filter by it');
    const mine = await api(anaToken, 'GET', '/inbox?from=group:lunch');
    assert.ok(mine.items.length > 0 && mine.items.every((i) => i.activity.actor === 'user:bob'), 'only what the members wrote');
  });

  await story('21. a photo with alt text: uploaded from the composer, seen in the other person\'s inbox; avatars on cards', async () => {
    // An 8 × 6 PNG of stripes.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAgAAAAGCAIAAABxZ0isAAAAJUlEQVR4nGNgYGCQk5OzsbGJioqqqKiYNm3ali1bLl26xDCQEgBFbjsRUdjdPwAAAABJRU5ErkJggg==', 'base64');
    // Ana's avatar, through the API: upload, then point her avatar at it.
    const up = await fetch(`${BASE}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${anaToken}` }, body: png });
    assert.equal(up.status, 201);
    const face = await up.json();
    await api(anaToken, 'PUT', '/me/avatar', { media: face.id });
    await bob.goto(`${BASE}/`);
    await visible(bob.locator('#inbox-title'));
    await ana.goto(`${BASE}/compose`);
    await ana.selectOption('#compose-type', 'Image');
    await ana.fill('#compose-title', 'Stripes at the harbour');
    await ana.setInputFiles('#compose-file', { name: 'stripes.png', mimeType: 'image/png', buffer: png });
    await ana.fill('#compose-alt', 'Green and grey stripes');
    await ana.uncheck('#compose-public');
    await ana.fill('#compose-people', 'bob');
    await ana.click('#publish');
    await visible(ana.locator('#inbox-title'));
    // Bob sees it arrive (behind the new-items bar: his inbox has items): the image itself
    // (fetched with his token), its alt text, Ana's avatar.
    await visible(bob.locator('#new-bar'));
    await bob.click('#new-bar');
    const card = bob.locator('.card', { hasText: 'Stripes at the harbour' });
    await visible(card);
    const img = card.locator('img.media[alt="Green and grey stripes"]');
    await visible(img);
    await bob.waitForFunction((el) => el.complete && el.naturalWidth === 8, await img.elementHandle(), { timeout: T });
    await visible(card.locator('figcaption', { hasText: 'Green and grey stripes' }));
    await visible(card.locator('img.avatar'));
    await shot(bob, 'photo');
    // The image is Ana's and Bob's only: its URL answers 404 without a token.
    const src = await card.locator('tidings-object-image').evaluate((el) => el.activity.object.attachment[0].url);
    assert.equal((await fetch(`${BASE}${src}`)).status, 404);
  });

  // A last look at both screens for the artifacts.
  await shot(ana, 'ana-final');
  assert.deepEqual(problems, []);
} catch (e) {
  exitCode = 1;
  if (problems.length) console.log(`problems seen:\n  ${problems.join('\n  ')}`);
} finally {
  await browser.close();
}
const secs = ((Date.now() - started) / 1000).toFixed(1);
console.log(`${results.filter((r) => r[1] === 'ok').length}/${results.length} stories passed in ${secs} s; screenshots in ${SHOTS}`);
process.exit(exitCode);
