// Notifications: what others did to me (likes, shares, replies, mentions, follows, joins), one
// sentence each, newest first, older pages as you scroll. Opening the page marks everything
// shown as seen (the badge drops to 0 on every device); reading is per item or all at once.
//
// The server keeps one read marker per feed, not a flag per item: marking an item read marks it
// and everything older. The page carries `unread`, the number of newest items past the marker,
// so the first `unread` rows are the unread ones.

import { h, replace, timeAgo, toast } from '../dom.js';
import { get, post, qs } from '../api.js';
import { pagedList } from '../paged.js';
import { noticeSentence } from '../notices.js';
import { NOTIFICATIONS_FEED, notificationCounts, setNotificationCounts } from '../badge.js';

const FEED = `/feeds/${NOTIFICATIONS_FEED}`;

/** `/notifications`. */
export async function notificationsView(root) {
  /** Rows in list order (newest first), to paint the read marker onto. */
  let rows = [];
  let unread = 0;

  const paintRow = (row, i) => {
    const isUnread = i < unread;
    row.classList.toggle('unread', isUnread);
    row.querySelector('button.mark-read').hidden = !isUnread;
  };
  const paintUnread = () => {
    rows.forEach(paintRow);
    markAll.disabled = unread === 0;
  };

  const markers = (body) => {
    setNotificationCounts(body);
    unread = body.unread;
    paintUnread();
  };

  const markRead = async (cursor) => {
    try {
      markers(await post(`${FEED}/read`, cursor ? { cursor } : undefined));
    } catch (e) { toast(e.message, 'error'); }
  };

  const row = (item) => {
    const { nodes, href } = noticeSentence(item);
    const readButton = h('button', { type: 'button', class: 'ghost mark-read', text: 'Mark read',
      'aria-label': 'Mark read: this notification and older ones', onclick: () => markRead(item.cursor) });
    const el = h('article', { class: 'notice', dataset: { reason: item.via || '', cursor: item.cursor || '' } },
      h('p', { class: 'sentence' }, nodes),
      h('div', { class: 'notice-foot' },
        timeAgo(item.activity && item.activity.published),
        h('a', { class: 'open', href, text: 'Open' }),
        readButton));
    // Opening a notification reads it (and, by the marker's nature, the older ones).
    el.addEventListener('click', (e) => {
      if (e.target instanceof Element && e.target.closest('a') && rows.indexOf(el) < unread) markRead(item.cursor);
    });
    rows.push(el);
    paintRow(el, rows.length - 1);
    return el;
  };

  const list = pagedList({
    load: async (before) => {
      const page = await get(`${FEED}${qs({ before, limit: 20 })}`);
      if (!before) {
        rows = [];
        unread = page.unread;
      }
      return page;
    },
    card: row,
    empty: h('p', { class: 'muted empty', text: 'No notifications yet. Likes, shares, replies, mentions and new followers show up here.' }),
  });

  const markAll = h('button', { type: 'button', class: 'ghost', id: 'mark-all-read', text: 'Mark all read', onclick: () => markRead(null) });
  const newBar = h('button', { type: 'button', id: 'notif-new-bar', class: 'new-bar', hidden: true });

  /** Loads the newest page and marks it seen up to its newest item. */
  const showNewest = async () => {
    const page = await list.loadFirst();
    paintUnread();
    const newest = page.items[0];
    if (newest) {
      try {
        markers(await post(`${FEED}/seen`, { cursor: newest.cursor }));
      } catch (e) { toast(e.message, 'error'); }
    }
  };
  newBar.addEventListener('click', async () => {
    newBar.hidden = true;
    await showNewest();
    const first = list.element.querySelector('.notice a');
    if (first) first.focus({ preventScroll: true });
  });

  // New notifications while the page is open wait behind a bar, as on the inbox.
  const onCounts = (e) => {
    const { unseen } = e.detail;
    newBar.textContent = `${unseen} new ${unseen === 1 ? 'notification' : 'notifications'} — show`;
    newBar.hidden = unseen === 0;
  };
  window.addEventListener('tidings:counts', onCounts);

  replace(root, h('section', { class: 'notifications', 'aria-labelledby': 'notif-title' },
    h('div', { class: 'stream-head' },
      h('h1', { id: 'notif-title', text: 'Notifications' }),
      markAll),
    newBar,
    list.element));
  await showNewest();
  onCounts({ detail: notificationCounts() });
  return () => {
    window.removeEventListener('tidings:counts', onCounts);
    list.stop();
  };
}
