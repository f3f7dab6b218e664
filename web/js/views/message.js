// One message: its template, the thread of replies, its versions if edited, and a reply box.

import { h, replace, timeAgo } from '../dom.js';
import { get } from '../api.js';
import { activityCard } from '../card.js';
import { objectElement, str } from '../objects.js';
import { pagedList } from '../paged.js';
import { replyBox } from './compose.js';

/** `/a/:id`. */
export async function messageView(root, { params }) {
  const [id] = params;
  let activity;
  try {
    activity = await get(`/activities/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 410) {
      replace(root, h('section', { class: 'panel' }, h('h1', { text: 'Retracted' }),
        h('p', { class: 'muted tombstone', text: 'Its author retracted this message. The log keeps the record; it is no longer shown.' })));
      return undefined;
    }
    throw e;
  }
  const edited = activity.tidings && activity.tidings.edited;
  const versions = edited ? h('details', { class: 'versions panel' }, h('summary', { text: 'Versions (edited)' })) : null;
  if (versions) {
    versions.addEventListener('toggle', async () => {
      if (!versions.open || versions.dataset.loaded) return;
      versions.dataset.loaded = '1';
      const page = await get(`/activities/${encodeURIComponent(id)}/versions`);
      const list = Array.isArray(page.items) ? page.items : [];
      versions.append(h('ol', { class: 'version-list' }, list.map((v) => {
        const a = v.activity || v;
        return h('li', {}, h('p', { class: 'muted small' }, `${str(a.type) || 'Create'} · `, timeAgo(str(a.published))), objectElement(a));
      })));
    });
  }
  const replies = pagedList({
    load: (before) => get(`/activities/${encodeURIComponent(id)}/replies${before ? `?before=${encodeURIComponent(before)}` : ''}`),
    card: (item) => activityCard(item),
    empty: h('p', { class: 'muted empty', text: 'No replies yet.' }),
  });
  replace(root,
    h('section', { class: 'message-page' },
      h('h1', { class: 'visually-hidden', text: 'Message' }),
      activityCard({ activity }),
      versions,
      h('section', { class: 'thread panel', 'aria-label': 'Replies' },
        h('h2', { text: 'Replies' }),
        replies.element,
        replyBox(activity, () => replies.loadFirst()))));
  await replies.loadFirst();
  return () => replies.stop();
}
