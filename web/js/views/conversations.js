// Conversations (decision 0027): direct messages grouped by the people they are between.
// `/conversations` lists them (newest message first, unread counts) with a form to start one;
// `/m/ID` is a chat view of one, fed live by the app's one push channel: every inbox item
// carries the `conversation` it belongs to, and the view keeps the ones that are its own.

import { h, replace, timeAgo, toast } from '../dom.js';
import { get, post, session } from '../api.js';
import { navigate } from '../nav.js';
import { bindInbox } from '../live.js';
import { publish, words } from './compose.js';

const others = (people) => people.filter((p) => p !== session.user.username);
const contentOf = (activity) => (activity && activity.object && typeof activity.object.content === 'string' ? activity.object.content : '');
const authorOf = (activity) => String((activity && activity.actor) || '').replace(/^user:/, '');
const key = () => (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()));

/** `/conversations`. */
export async function conversationsView(root) {
  const list = await get('/conversations?limit=50');
  const error = h('p', { class: 'error', role: 'alert', id: 'new-message-error' });
  const to = h('input', { name: 'to', id: 'new-message-to', placeholder: 'bob, cy', 'aria-label': 'To (usernames)' });
  const text = h('textarea', { name: 'text', id: 'new-message-text', rows: 2, 'aria-label': 'Message' });
  const form = h('form', { class: 'panel', id: 'new-message' },
    h('h2', { text: 'New message' }),
    h('label', { class: 'field' }, h('span', { text: 'To (usernames)' }), to),
    h('label', { class: 'field' }, h('span', { text: 'Message' }), text),
    error,
    h('button', { type: 'submit', id: 'new-message-send', text: 'Send' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const people = words(to.value);
    if (!people.length || !text.value.trim()) {
      error.textContent = 'Name at least one person and write something.';
      return;
    }
    try {
      await publish({ type: 'Create', object: { type: 'Note', content: text.value }, to: people.map((p) => `user:${p}`) }, key());
      // The conversation now holds the newest message of all: it heads the list.
      const fresh = await get('/conversations?limit=1');
      if (fresh.items[0]) navigate(`/m/${encodeURIComponent(fresh.items[0].id)}`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  const rows = list.items.map((c) => h('li', { class: `conversation-row${c.unread ? ' unread' : ''}`, dataset: { id: c.id } },
    h('a', { href: `/m/${encodeURIComponent(c.id)}` },
      h('strong', { class: 'who', text: others(c.participants).join(', ') }),
      c.unread ? h('span', { class: 'badge unread-count', text: String(c.unread), 'aria-label': `${c.unread} unread` }) : null,
      h('span', { class: 'muted small last', text: `${authorOf(c.last_message)}: ${contentOf(c.last_message)}` }),
      h('span', { class: 'muted small' }, timeAgo(c.last_message.published)))));
  replace(root,
    h('section', { class: 'panel', id: 'conversations' },
      h('h1', { text: 'Messages' }),
      rows.length ? h('ul', { class: 'conversation-list' }, rows) : h('p', { class: 'muted', text: 'No conversations yet.' })),
    form);
}

/** `/m/ID`: one conversation as a chat. */
export async function chatView(root, { params: [id] }) {
  const [page, summary] = await Promise.all([
    get(`/conversations/${encodeURIComponent(id)}?limit=50`),
    post(`/conversations/${encodeURIComponent(id)}/read`),
  ]);
  const shown = new Set();
  const log = h('ol', { class: 'chat-log', id: 'chat-log', 'aria-live': 'polite' });
  const add = (activity) => {
    if (!activity || shown.has(activity.id)) return;
    shown.add(activity.id);
    const mine = authorOf(activity) === session.user.username;
    log.append(h('li', { class: `bubble${mine ? ' mine' : ''}`, dataset: { id: activity.id } },
      h('span', { class: 'muted small who', text: mine ? 'You' : authorOf(activity) }),
      h('span', { class: 'content', text: contentOf(activity) }),
      h('span', { class: 'muted small' }, timeAgo(activity.published))));
    log.lastElementChild.scrollIntoView({ block: 'end' });
  };
  for (const item of [...page.items].reverse()) add(item.activity);
  const text = h('textarea', { id: 'chat-text', rows: 2, 'aria-label': 'Message' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'chat-form', id: 'chat-form' }, text, error, h('button', { type: 'submit', id: 'chat-send', text: 'Send' }));
  const to = others(summary.participants).map((p) => `user:${p}`);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    if (!text.value.trim()) return;
    try {
      const sent = await publish({ type: 'Create', object: { type: 'Note', content: text.value }, to }, key());
      text.value = '';
      add(sent);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  replace(root, h('section', { class: 'panel chat', id: 'chat', dataset: { conversation: id } },
    h('h1', { text: others(summary.participants).join(', ') }),
    h('p', { class: 'muted small', text: `Between ${summary.participants.join(', ')}` }),
    log, form));
  // New messages arrive on the one channel; this view keeps its own and marks them read.
  return bindInbox({
    filter: {},
    after: null,
    onItem: (item) => {
      if (item.conversation !== id) return;
      add(item.activity);
      post(`/conversations/${encodeURIComponent(id)}/read`).catch(() => toast('Could not mark read.', 'error'));
    },
  });
}
