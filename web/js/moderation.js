// Moderation in the web app: the "Report" control on a card, a circle's report queue for its
// moderators (resolve: dismiss, hide, remove, ban), and the circle's public moderation log.

import { h, replace, toast, timeAgo } from './dom.js';
import { get, post } from './api.js';
import { objectElement, str } from './objects.js';

const REASONS = [
  ['spam', 'Spam'], ['harassment', 'Harassment'], ['hate', 'Hate'], ['violence', 'Violence'],
  ['sexual', 'Sexual content'], ['misinformation', 'Misinformation'], ['off_topic', 'Off topic'],
  ['other', 'Something else'],
];

/** A "Report" button that opens a small form under it (reason, comment, send). */
export function reportControl(activity) {
  const wrap = h('span', { class: 'report' });
  const open = h('button', { type: 'button', class: 'ghost report-open', text: 'Report' });
  open.addEventListener('click', () => {
    const reason = h('select', { name: 'reason', 'aria-label': 'Reason' },
      REASONS.map(([v, t]) => h('option', { value: v, text: t })));
    const comment = h('input', { type: 'text', name: 'comment', maxlength: '1000', placeholder: 'What is wrong? (moderators only)', 'aria-label': 'Comment for the moderators' });
    const form = h('form', { class: 'report-form row wrap' }, reason, comment,
      h('button', { type: 'submit', text: 'Send report' }));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await post(`/activities/${encodeURIComponent(str(activity.id))}/reports`, { reason: reason.value, comment: comment.value });
        replace(wrap, h('span', { class: 'muted small reported', text: 'Reported. Only the moderators see who reported it.' }));
      } catch (err) { toast(err.message, 'error'); }
    });
    replace(wrap, form);
    reason.focus();
  });
  wrap.append(open);
  return wrap;
}

/** The queue tab: each reported item with its reports and its author's record, and decisions. */
export async function reportsPanel(panel, circle) {
  const base = `/circles/${encodeURIComponent(circle.name)}/reports`;
  const body = await get(base);
  const items = Array.isArray(body.items) ? body.items : [];
  if (!items.length) {
    replace(panel, h('p', { class: 'empty muted', text: 'No open reports. Nothing to do.' }));
    return;
  }
  replace(panel, h('div', { class: 'report-queue' }, items.map((item) => queueItem(item, base))));
}

function queueItem(item, base) {
  const a = item.author || {};
  const el = h('article', { class: 'card report-item', dataset: { id: str(item.activity_id) } });
  const decide = (decision) => async () => {
    const reason = el.querySelector('input[name=reason]').value;
    try {
      await post(`${base}/${encodeURIComponent(str(item.activity_id))}/resolution`, { decision, reason });
      replace(el, h('p', { class: 'muted resolved', text: `Resolved: ${decision}.` }));
    } catch (e) { toast(e.message, 'error'); }
  };
  el.append(
    h('header', { class: 'card-head' },
      h('a', { class: 'author', href: `/u/${encodeURIComponent(str(a.username))}`, text: `@${str(a.username)}` }),
      h('span', { class: 'muted small', text: `${a.posts || 0} posts here · ${a.reported || 0} reported · ${a.taken_down || 0} taken down${a.banned ? ' · banned' : ''}` })),
    item.activity && item.activity.object && typeof item.activity.object === 'object' ? objectElement(item.activity) : null,
    h('ul', { class: 'reports' }, (item.reports || []).map((r) => h('li', {},
      h('strong', { text: str(r.reason) }), ' by ', h('span', { class: 'reporter', text: `@${str(r.reporter)}` }),
      ' ', h('span', { class: 'muted' }, timeAgo(str(r.created_at))), ' ',
      r.comment ? h('q', { text: str(r.comment) }) : null))),
    h('div', { class: 'row wrap decide' },
      h('input', { type: 'text', name: 'reason', maxlength: '1000', placeholder: 'Reason (shown to the author and in the log)', 'aria-label': 'Reason for the decision' }),
      h('button', { type: 'button', class: 'ghost', dataset: { decision: 'dismiss' }, onclick: decide('dismiss'), text: 'Dismiss' }),
      h('button', { type: 'button', class: 'ghost danger', dataset: { decision: 'hide' }, onclick: decide('hide'), text: 'Hide' }),
      h('button', { type: 'button', class: 'ghost danger', dataset: { decision: 'remove' }, onclick: decide('remove'), text: 'Remove author' }),
      h('button', { type: 'button', class: 'ghost danger', dataset: { decision: 'ban' }, onclick: decide('ban'), text: 'Ban author' })));
  return el;
}

/** The public log tab: who did what, when, why (reporters hidden from members). */
export async function logPanel(panel, circle) {
  const body = await get(`/circles/${encodeURIComponent(circle.name)}/moderation-log`);
  const items = Array.isArray(body.items) ? body.items : [];
  if (!items.length) {
    replace(panel, h('p', { class: 'empty muted', text: 'No moderation in this circle yet.' }));
    return;
  }
  replace(panel, h('ol', { class: 'modlog' }, items.map((e) => h('li', { dataset: { action: str(e.action) } },
    h('strong', { text: str(e.action) }), ' ',
    h('span', { text: e.actor ? `by @${str(e.actor)}` : 'by a member' }), ' ',
    h('span', { class: 'muted' }, timeAgo(str(e.published))),
    e.reason ? h('span', { class: 'reason', text: ` — ${str(e.reason)}` }) : null,
    e.until ? h('span', { class: 'muted', text: ` (until ${str(e.until)})` }) : null))));
}
