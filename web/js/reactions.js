// Like and Share on a message: two toggle buttons with the counts the activity carries
// (`tidings.likes`, `tidings.shares`). Liking publishes a Like, taking it back an Undo
// (POST / DELETE /activities/{id}/like; share likewise with Announce).
//
// An activity does not say whether the reader reacted to it, so what I did is learned from my
// own outbox (my newest reactions are there until undone), from my clicks, and from the
// server's answers: 409 `already_liked` means it was done (on another device, say), 404
// `not_liked` that it was not.

import { h, toast } from './dom.js';
import { get, post, del, qs, session } from './api.js';
import { str } from './objects.js';

const KINDS = {
  like: { verb: 'Like', label: 'Like', count: 'likes', done: 'already_liked', notDone: 'not_liked', one: 'like', many: 'likes' },
  share: { verb: 'Announce', label: 'Share', count: 'shares', done: 'already_shared', notDone: 'not_shared', one: 'share', many: 'shares' },
};

/** `${kind}:${activity id}` for each reaction of mine known to be live. */
const mine = new Set();
let seededFor = null;
let seeding = null;

/** Reads my newest reactions from my outbox, once per person and page load. */
function seed() {
  const me = session.user && session.user.username;
  if (!me) return Promise.resolve();
  if (seededFor !== me) {
    seededFor = me;
    mine.clear();
    seeding = get(`/users/${encodeURIComponent(me)}/outbox${qs({ limit: 100 })}`).then((page) => {
      for (const item of page.items) {
        const a = item.activity || {};
        const kind = Object.keys(KINDS).find((k) => KINDS[k].verb === a.type);
        if (kind && typeof a.object === 'string') mine.add(`${kind}:${a.object}`);
      }
    }).catch(() => { /* unknown: the buttons start unpressed and the server corrects them */ });
  }
  return seeding;
}

/** Whether an activity takes reactions: a posted object, not a reaction, follow or edit. */
export function reactable(activity) {
  const verb = str(activity.type) || 'Create';
  return Boolean(activity.id) && activity.object && typeof activity.object === 'object' && verb !== 'Update' && verb !== 'Delete';
}

function reactionButton(activity, kind) {
  const spec = KINDS[kind];
  const id = str(activity.id);
  const key = `${kind}:${id}`;
  let count = Number((activity.tidings || {})[spec.count]) || 0;
  const countEl = h('span', { class: 'count' });
  const button = h('button', { type: 'button', class: `ghost reaction ${kind}`, 'aria-pressed': 'false' }, spec.label, ' ', countEl);
  const paint = () => {
    const pressed = mine.has(key);
    button.setAttribute('aria-pressed', String(pressed));
    countEl.textContent = String(count);
    button.title = `${count} ${count === 1 ? spec.one : spec.many}${pressed ? ' (you too)' : ''}`;
    button.dataset.count = String(count);
  };
  paint();
  seed().then(paint);

  button.addEventListener('click', async () => {
    const path = `/activities/${encodeURIComponent(id)}/${kind}`;
    const undo = mine.has(key);
    button.disabled = true;
    try {
      if (undo) {
        await del(path);
        mine.delete(key);
        count = Math.max(0, count - 1);
      } else {
        await post(path);
        mine.add(key);
        count += 1;
      }
    } catch (e) {
      if (e.code === spec.done || e.code === spec.notDone) {
        // Done or undone elsewhere: take the server's word, and its count.
        if (e.code === spec.done) mine.add(key);
        else mine.delete(key);
        try {
          const fresh = await get(`/activities/${encodeURIComponent(id)}`);
          count = Number((fresh.tidings || {})[spec.count]) || 0;
        } catch { /* keep the count shown */ }
      } else toast(e.message, 'error');
    } finally {
      button.disabled = false;
      paint();
    }
  });
  return button;
}

/** The Like and Share buttons of one activity. */
export function reactionButtons(activity) {
  return h('span', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' },
    reactionButton(activity, 'like'),
    reactionButton(activity, 'share'));
}
