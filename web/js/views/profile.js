// A person's page: who they are, their circles and their outbox.

import { h, replace } from '../dom.js';
import { get, session } from '../api.js';
import { activityCard } from '../card.js';
import { pagedList } from '../paged.js';

/** `/u/:name`. */
export async function profileView(root, { params }) {
  const [name] = params;
  const user = await get(`/users/${encodeURIComponent(name)}`);
  const mine = session.user && session.user.username === user.username;
  let circles = [];
  try {
    circles = (await get(`/users/${encodeURIComponent(name)}/circles`)).items.filter((m) => m.state === 'active');
  } catch { /* a profile still shows without its circles */ }
  const outbox = pagedList({
    load: (before) => get(`/users/${encodeURIComponent(name)}/outbox${before ? `?before=${encodeURIComponent(before)}` : ''}`),
    card: (item) => activityCard(item),
    empty: h('p', { class: 'muted empty', text: 'Nothing published yet.' }),
  });
  replace(root, h('div', { class: 'profile' },
    h('section', { class: 'panel' },
      h('h1', { text: user.display_name }),
      h('p', { class: 'muted handle', text: `@${user.username}${user.status !== 'active' ? ` · ${user.status}` : ''}` }),
      h('p', { class: 'muted small', text: `Joined ${new Date(user.created_at).toLocaleDateString()}` }),
      mine && h('p', {}, h('a', { href: '/subscriptions', text: 'My subscriptions' })),
      h('h2', { text: 'Circles' }),
      circles.length === 0
        ? h('p', { class: 'muted', text: 'No circles.' })
        : h('ul', { class: 'chips' }, circles.map((m) => h('li', {}, h('a', { class: 'chip circle', href: `/c/${encodeURIComponent(m.circle)}`, text: `${m.circle} · ${m.role}` }))))),
    h('section', { class: 'outbox' }, h('h2', { text: 'Outbox' }), outbox.element)));
  await outbox.loadFirst();
  return () => outbox.stop();
}
