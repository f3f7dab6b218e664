// Pieces shared by the circle pages: badges and the membership button.

import { h, toast } from './dom.js';
import { put, del, session } from './api.js';

/** Visibility, policy, size and archive state as small badges. */
export function circleBadges(c) {
  return h('span', { class: 'badges' },
    h('span', { class: 'badge', text: c.visibility }),
    h('span', { class: 'badge', text: c.join_policy === 'open' ? 'open to join' : c.join_policy === 'approval' ? 'approval needed' : 'invite only' }),
    h('span', { class: 'badge members', text: `${c.member_count} ${c.member_count === 1 ? 'member' : 'members'}` }),
    c.archived_at && h('span', { class: 'badge archived', text: 'archived' }));
}

/** Join / request / cancel / leave, depending on the caller's membership; `done` re-renders. */
export function membershipButton(c, done) {
  const me = session.user;
  const m = c.my_membership;
  const path = `/circles/${encodeURIComponent(c.name)}/members/${encodeURIComponent(me.username)}`;
  const run = (fn, message) => async (e) => {
    e.currentTarget.disabled = true;
    try {
      await fn();
      toast(message);
    } catch (err) {
      toast(err.message, 'error');
    }
    done();
  };
  if (c.archived_at) return h('span', { class: 'muted small', text: m && m.state === 'active' ? `You are ${m.role === 'member' ? 'a member' : `the ${m.role}`}` : 'Read-only' });
  if (!m) {
    if (c.join_policy === 'open') return h('button', { type: 'button', class: 'join', onclick: run(() => put(path), `Joined ${c.name}.`), text: 'Join' });
    if (c.join_policy === 'approval') return h('button', { type: 'button', class: 'join', onclick: run(() => put(path), 'Request sent to the moderators.'), text: 'Request to join' });
    return h('span', { class: 'muted small', text: 'Invite only' });
  }
  if (m.state === 'requested') {
    return h('span', { class: 'row' }, h('span', { class: 'badge pending', text: 'Request pending' }),
      h('button', { type: 'button', class: 'ghost', onclick: run(() => del(path), 'Request withdrawn.'), text: 'Withdraw' }));
  }
  return h('span', { class: 'row' }, h('span', { class: 'badge role', text: m.role }),
    m.role !== 'owner' && h('button', { type: 'button', class: 'ghost leave', onclick: run(() => del(path), `You left ${c.name}.`), text: 'Leave' }));
}
