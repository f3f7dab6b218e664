// The unseen-notifications count shown in the header. The count lives here, outside the
// header, because the header is rebuilt on every route while the count keeps arriving from the
// one live channel (a `counts` event) or from GET /feeds.

import { h } from './dom.js';
import { get } from './api.js';

export const NOTIFICATIONS_FEED = 'notifications';

let unseen = 0;
let unread = 0;

/** The header link to /notifications with its live badge. */
export function notificationsLink(current) {
  const count = h('span', { class: 'count', id: 'notif-badge', 'aria-hidden': 'true' });
  const link = h('a', { href: '/notifications', id: 'notif-link', 'aria-current': current ? 'page' : null },
    'Notifications', count);
  paint(link);
  return link;
}

function paint(link = document.getElementById('notif-link')) {
  if (!link) return;
  const count = link.querySelector('.count');
  count.textContent = unseen > 99 ? '99+' : String(unseen);
  count.hidden = unseen === 0;
  link.dataset.unseen = String(unseen);
  // The number is hidden from screen readers as a bare digit; the label says what it counts.
  link.setAttribute('aria-label', unseen ? `Notifications, ${unseen} new` : 'Notifications');
}

/** Takes counts from any source: the live channel, a feed page, a marker move. */
export function setNotificationCounts(counts) {
  if (!counts) return;
  if (Number.isInteger(counts.unseen)) unseen = counts.unseen;
  if (Number.isInteger(counts.unread)) unread = counts.unread;
  paint();
  window.dispatchEvent(new CustomEvent('tidings:counts', { detail: { unseen, unread } }));
}

export function notificationCounts() {
  return { unseen, unread };
}

/** Reads the counts from GET /feeds (on page load, and when the live channel has no counts). */
export async function refreshNotificationCounts() {
  try {
    const feeds = await get('/feeds');
    const feed = Array.isArray(feeds) ? feeds.find((f) => f.name === NOTIFICATIONS_FEED) : null;
    if (feed) setNotificationCounts(feed);
  } catch { /* the badge keeps its last count */ }
}

/** Forgets the counts (logout). */
export function resetNotificationCounts() {
  unseen = 0;
  unread = 0;
  paint();
}
