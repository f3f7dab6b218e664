// The app shell: header, client-side routes (History API), session bootstrap.

import { h, replace, toast } from './dom.js';
import { get, del, session } from './api.js';
import { navigate } from './nav.js';
import './objects.js';
import './types/index.js';
import { loginView, signupView } from './views/auth.js';
import { homeView } from './views/home.js';
import { circlesView, newCircleView } from './views/circles.js';
import { circleView } from './views/circle.js';
import { messageView } from './views/message.js';
import { composeView } from './views/compose.js';
import { profileView } from './views/profile.js';
import { subscriptionsView } from './views/subscriptions.js';
import { notificationsView } from './views/notifications.js';
import { accountView } from './views/account.js';
import { searchView } from './views/search.js';
import { conversationsView, chatView } from './views/conversations.js';
import { notificationsLink, resetNotificationCounts } from './badge.js';
import { startLive, stopLive } from './live.js';

const routes = [
  [/^\/login$/, loginView, { public: true }],
  [/^\/signup$/, signupView, { public: true }],
  [/^\/$/, homeView],
  [/^\/circles$/, circlesView],
  [/^\/circles\/new$/, newCircleView],
  [/^\/c\/([^/]+)$/, circleView],
  [/^\/a\/([^/]+)$/, messageView],
  [/^\/compose$/, composeView],
  [/^\/u\/([^/]+)$/, profileView],
  [/^\/subscriptions$/, subscriptionsView],
  [/^\/notifications$/, notificationsView],
  [/^\/account$/, accountView],
  [/^\/search$/, searchView],
  [/^\/conversations$/, conversationsView],
  [/^\/m\/([^/]+)$/, chatView],
];

const main = () => document.getElementById('main');
let cleanup = null;
/** The path and query last rendered. */
let shown = '';

let generation = 0;

async function render() {
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  const mine = ++generation;
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  shown = path + location.search;
  const found = routes.find(([re]) => re.test(path));
  renderHeader(path);
  // The one live channel runs while someone is logged in, whatever the page (the badge).
  if (session.token && session.user) startLive();
  else stopLive();
  // Each render owns a fresh container: a slow, superseded view writes into a detached node.
  const root = h('div', { class: 'view' });
  replace(main(), root);
  if (!found) {
    replace(root, h('section', { class: 'panel' }, h('h1', { text: 'Not found' }), h('p', {}, h('a', { href: '/', text: 'Back home' }))));
    return;
  }
  const [re, view, opts = {}] = found;
  if (!opts.public && !session.token) {
    navigate(`/login?next=${encodeURIComponent(path + location.search)}`, { replace: true });
    return;
  }
  const params = re.exec(path).slice(1).map(decodeURIComponent);
  replace(root, h('p', { class: 'muted', text: 'Loading…' }));
  let done;
  try {
    done = await view(root, { params, query });
  } catch (e) {
    replace(root, h('section', { class: 'panel' }, h('h1', { text: 'Something went wrong' }), h('p', { role: 'alert', text: e.message || String(e) })));
  }
  if (mine !== generation) {
    if (typeof done === 'function') done();
    return;
  }
  cleanup = done;
  // After an in-app navigation the old focus is gone: start keyboard users at the new content.
  const active = document.activeElement;
  if (generation > 1 && (!active || active === document.body || !active.isConnected)) {
    main().focus({ preventScroll: true });
  }
  const heading = root.querySelector('h1');
  if (heading) document.title = `${heading.textContent} · Tidings`;
  document.documentElement.dataset.view = path;
}

function renderHeader(path) {
  const nav = document.getElementById('nav');
  const user = session.user;
  const link = (href, text, extra = {}) => h('a', { href, text, 'aria-current': href === path ? 'page' : null, ...extra });
  if (!session.token || !user) {
    replace(nav, link('/login', 'Log in'), link('/signup', 'Sign up'));
    return;
  }
  replace(nav,
    headerSearch(path),
    link('/', 'Home'),
    link('/circles', 'Circles'),
    link('/conversations', 'Messages', { id: 'messages-link' }),
    notificationsLink(path === '/notifications'),
    link('/compose', 'Compose', { class: 'primary-link' }),
    link(`/u/${encodeURIComponent(user.username)}`, user.display_name || user.username, { id: 'me-link' }),
    link('/account', 'Account', { id: 'account-link' }),
    h('button', { type: 'button', class: 'ghost', id: 'logout', onclick: logout, text: 'Log out' }));
}

/** The header's search box: submitting opens the results page. */
function headerSearch(path) {
  const current = path === '/search' ? new URLSearchParams(location.search).get('q') || '' : '';
  const input = h('input', { type: 'search', name: 'q', id: 'header-search', value: current, placeholder: 'Search', 'aria-label': 'Search posts, circles and people' });
  const form = h('form', { class: 'header-search', role: 'search' }, input);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = input.value;
    if (q.trim()) navigate(`/search?q=${encodeURIComponent(q)}`);
  });
  return form;
}

async function logout() {
  try { await del('/sessions/current'); } catch { /* the token may already be gone */ }
  session.clear();
  stopLive();
  resetNotificationCounts();
  toast('Logged out.');
  navigate('/login');
}

document.addEventListener('click', (e) => {
  if (e.target instanceof Element && e.target.closest('a.skip')) {
    e.preventDefault();
    main().focus();
    return;
  }
  const a = e.target instanceof Element ? e.target.closest('a[href]') : null;
  if (!a || a.target || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/') || href.startsWith('/docs')) return;
  e.preventDefault();
  navigate(href);
});
// A hash change (e.g. the skip link) is not a new page: only re-render when the route changed.
window.addEventListener('popstate', () => {
  if (location.pathname + location.search !== shown) render();
});
window.addEventListener('tidings:navigate', render);
window.addEventListener('tidings:unauthorized', (e) => {
  session.clear();
  stopLive();
  resetNotificationCounts();
  const expired = e.detail && e.detail.code === 'session_expired';
  toast(expired ? 'Your session expired after a while unused; please log in again.' : 'Your session ended; please log in again.', 'error');
  navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
});

async function boot() {
  if (session.token) {
    try {
      session.setUser(await get('/me'));
    } catch (e) {
      if (e.status === 401 || e.status === 403) session.clear();
    }
  }
  await render();
}

boot();
