// Like and Share on a message: two toggle buttons with the counts the activity carries
// (`tidings.likes`, `tidings.shares`). Liking publishes a Like, taking it back an Undo
// (POST / DELETE /activities/{id}/like; share likewise with Announce).
//
// An activity does not say whether the reader reacted to it (it reads the same for everyone),
// so the buttons ask `GET /api/v1/me/reactions?activities=…`: the cards painted in one go share
// one request. After that my clicks and the server's answers keep it right: 409
// `already_liked` means it was done (on another device, say), 404 `not_liked` that it was not.

import { h, toast } from './dom.js';
import { get, post, del, qs, session } from './api.js';
import { str } from './objects.js';

const KINDS = {
  like: { verb: 'Like', label: 'Like', count: 'likes', done: 'already_liked', notDone: 'not_liked', one: 'like', many: 'likes' },
  share: { verb: 'Announce', label: 'Share', count: 'shares', done: 'already_shared', notDone: 'not_shared', one: 'share', many: 'shares' },
};

/** `${kind}:${activity id}` for each reaction of mine known to be live. */
const mine = new Set();
/** Activity ids whose state was asked for (or learned), for the current person. */
const known = new Set();
let knownFor = null;
/** Lookups waiting for the next batch: activity id → resolvers. */
let waiting = new Map();
/** The server's largest batch. */
const BATCH = 100;

/** Resolves once my reactions to `id` are known (or could not be learned). */
function lookUp(id) {
  const me = session.user && session.user.username;
  if (!me) return Promise.resolve();
  if (knownFor !== me) {
    knownFor = me;
    mine.clear();
    known.clear();
  }
  if (known.has(id)) return Promise.resolve();
  return new Promise((resolve) => {
    if (waiting.size === 0) setTimeout(flush, 0);
    const list = waiting.get(id) || [];
    list.push(resolve);
    waiting.set(id, list);
  });
}

/** Asks for every waiting id, a hundred at a time. */
async function flush() {
  const batch = waiting;
  waiting = new Map();
  const ids = [...batch.keys()];
  for (let i = 0; i < ids.length; i += BATCH) {
    const chunk = ids.slice(i, i + BATCH);
    try {
      const answer = await get(`/me/reactions${qs({ activities: chunk.join(',') })}`);
      for (const r of answer.items) {
        known.add(r.activity);
        if (r.liked) mine.add(`like:${r.activity}`);
        if (r.shared) mine.add(`share:${r.activity}`);
      }
    } catch { /* unknown: the buttons stay unpressed and the server corrects them on click */ }
    for (const id of chunk) for (const resolve of batch.get(id) || []) resolve();
  }
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
  lookUp(id).then(paint);

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
