// One activity as a card: author, time, the object's own template, tags, audience, actions,
// replies, "why am I seeing this", and the per-inbox / author controls.

import { h, timeAgo, toast, replace } from './dom.js';
import { del, post, session } from './api.js';
import { objectElement, str } from './objects.js';
import { openReader } from './reader.js';
import { reactable, reactionButtons } from './reactions.js';
import { targetLink } from './notices.js';
import { reportControl } from './moderation.js';
import { avatar } from './media.js';

/** Human text for an inbox entry's `via`. */
export function viaText(via) {
  if (!via) return null;
  if (via === 'author') return 'You posted this.';
  if (via === 'addressed') return 'It was addressed to you by name.';
  const m = /^subscription:(\d+):(.*)$/.exec(via);
  if (m) {
    // A saved search is `"QUERY"` or `"QUERY"@circle` (the query may hold quotes itself).
    const saved = /^"(.*)"(?:@(.+))?$/.exec(m[2]);
    if (saved) return `Matched your saved search "${saved[1]}"${saved[2] ? ` in ${saved[2]}` : ''}.`;
    return `It matched your subscription ${m[2]}.`;
  }
  return `Delivered via ${via}.`;
}

function authorOf(activity) {
  const t = activity.tidings || {};
  const a = t.author || t.actor || {};
  const username = str(a.username) || str(activity.actor).replace(/^user:/, '');
  return { username, display: str(a.display_name) || username, deleted: Boolean(a.deleted) };
}

function audienceChip(to) {
  if (typeof to !== 'string') return null;
  if (to.startsWith('circle:')) return h('a', { class: 'chip circle', href: `/c/${encodeURIComponent(to.slice(7))}`, text: to.slice(7) });
  if (to.startsWith('user:')) return h('a', { class: 'chip person', href: `/u/${encodeURIComponent(to.slice(5))}`, text: `@${to.slice(5)}` });
  return h('span', { class: 'chip', text: to });
}

const VERBS = { Update: 'edited', Delete: 'retracted', Like: 'liked', Announce: 'shared', Follow: 'followed' };

/**
 * Builds a card for `{activity, via?, cursor?}`. `inInbox` enables "hide"; `onGone` runs when the
 * card leaves the list (hidden or retracted).
 */
export function activityCard(item, { inInbox = false, onGone } = {}) {
  const activity = item.activity || item;
  const author = authorOf(activity);
  const me = session.user;
  const mine = me && me.username === author.username;
  const card = h('article', { class: 'card', dataset: { id: str(activity.id), type: str(activity.object && activity.object.type) || '' } });
  const objectType = activity.object && typeof activity.object === 'object' ? str(activity.object.type) : '';
  const verb = str(activity.type) || 'Create';
  const link = `/a/${encodeURIComponent(str(activity.id))}`;

  const header = h('header', { class: 'card-head' },
    author.username && avatar(author.username),
    h('a', { class: 'author', href: `/u/${encodeURIComponent(author.username)}`, text: author.display }),
    h('span', { class: 'muted handle', text: `@${author.username}` }),
    verb !== 'Create' && h('span', { class: 'muted', text: VERBS[verb] || verb }),
    h('a', { class: 'muted time', href: link, 'aria-label': 'open message' }, timeAgo(str(activity.published))),
    objectType && h('span', { class: 'badge', text: objectType }),
    activity.tidings && activity.tidings.edited && h('span', { class: 'badge edited', text: 'edited' }),
  );
  card.append(header);

  if (activity.inReplyTo && typeof activity.inReplyTo === 'string') {
    card.append(h('p', { class: 'muted small reply-to' }, 'Reply to ', targetLink(activity.inReplyTo)));
  }

  if (activity.object && typeof activity.object === 'object') card.append(objectElement(activity));
  else if (typeof activity.object === 'string') card.append(h('p', { class: 'target' }, referenceLink(activity.object)));

  const tags = (Array.isArray(activity.tag) ? activity.tag : []).filter((t) => typeof t === 'string' && !t.startsWith('sys:'));
  // A follow or reaction addressed to the person it points at already shows them as its target.
  const to = (Array.isArray(activity.to) ? activity.to : []).filter((t) => t !== activity.object);
  if (tags.length || to.length) {
    card.append(h('div', { class: 'chips' },
      tags.map((t) => h('a', { class: 'chip tag', href: `/?tags=${encodeURIComponent(t)}`, text: `#${t}` })),
      to.map(audienceChip)));
  }

  const actions = Array.isArray(activity.actions) ? activity.actions : [];
  if (actions.length) {
    card.append(h('div', { class: 'actions' }, actions.map((a) => h('button', {
      type: 'button', class: 'action', dataset: { action: str(a.name) },
      onclick: () => triggerAction(activity, a),
      text: label(str(a.name)),
    }))));
  }

  const replies = (activity.tidings && activity.tidings.replies) || 0;
  // A reaction or a follow is not itself replied to, liked or shared: only posts are.
  const foot = h('footer', { class: 'card-foot' }, reactable(activity) && [
    h('a', { href: link, class: 'replies', text: replies ? `${replies} ${replies === 1 ? 'reply' : 'replies'}` : 'Reply' }),
    reactionButtons(activity)]);
  const why = viaText(item.via);
  // A saved search's match says so on the card itself: it is why the person asked for it.
  if (why && /^subscription:\d+:"/.test(item.via || '')) foot.append(h('p', { class: 'via-saved muted small', text: why }));
  if (why) foot.append(h('details', { class: 'why' }, h('summary', { text: 'Why am I seeing this?' }), h('p', { text: why })));
  if (inInbox) {
    foot.append(h('button', { type: 'button', class: 'ghost hide', onclick: async () => {
      try {
        await del(`/inbox/${encodeURIComponent(activity.id)}`);
        card.remove();
        if (onGone) onGone(activity);
        toast('Hidden from your inbox. The circle keeps it.');
      } catch (e) { toast(e.message, 'error'); }
    }, text: 'Hide' }));
  }
  // Anyone who reads a post may report it to its circles' moderators (not their own).
  if (me && !mine && verb === 'Create') foot.append(reportControl(activity));
  if (mine && verb === 'Create') {
    const retract = h('button', { type: 'button', class: 'ghost danger retract', text: 'Retract' });
    retract.addEventListener('click', async () => {
      // Two steps instead of confirm(): a retraction is permanent.
      if (retract.dataset.armed !== '1') {
        retract.dataset.armed = '1';
        retract.textContent = 'Retract for everyone?';
        return;
      }
      try {
        await post(`/activities/${encodeURIComponent(activity.id)}/retract`);
        replace(card, h('p', { class: 'muted tombstone', text: 'You retracted this message.' }));
        if (onGone) onGone(activity);
      } catch (e) { toast(e.message, 'error'); }
    });
    foot.append(retract);
  }
  card.append(foot);
  return card;
}

/** What a reaction, follow or join points at: a person, a circle, or a described message. */
function referenceLink(ref) {
  if (ref.startsWith('user:')) return h('a', { class: 'chip person', href: `/u/${encodeURIComponent(ref.slice(5))}`, text: `@${ref.slice(5)}` });
  if (ref.startsWith('circle:')) return h('a', { class: 'chip circle', href: `/c/${encodeURIComponent(ref.slice(7))}`, text: ref.slice(7) });
  return targetLink(ref);
}

function label(name) {
  return name ? name[0].toUpperCase() + name.slice(1).replace(/[-_]/g, ' ') : 'Action';
}

/** Records the action through the API, then carries it out: a reader for GET, a notice otherwise. */
async function triggerAction(activity, action) {
  let result;
  try {
    result = await post(`/activities/${encodeURIComponent(activity.id)}/actions/${encodeURIComponent(action.name)}`);
  } catch (e) {
    toast(e.message, 'error');
    return;
  }
  const method = str(result && result.method) || 'GET';
  const url = str(result && result.url) || str(action.url);
  if (method === 'GET') openReader(activity, url, action.name);
  else toast(`${label(action.name)}: recorded (${method} ${url})`);
}
