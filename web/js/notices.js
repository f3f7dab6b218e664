// A notification as one readable sentence: "Ana liked your note “Ship it”", each name a link
// to the person, the rest a link to the message. Likes and shares carry only the id of what
// they are about, so the target is read once (cached) and filled in when it arrives.

import { h } from './dom.js';
import { get } from './api.js';
import { str } from './objects.js';

/** Activities by id, fetched once per page load: many notifications point at the same post. */
const targets = new Map();

function target(id) {
  if (!targets.has(id)) {
    targets.set(id, get(`/activities/${encodeURIComponent(id)}`).catch((e) => (e.status === 410 ? { retracted: true } : null)));
  }
  return targets.get(id);
}

/** Who did it: username and display name (shown as text, never markup). */
export function actorOf(activity) {
  const t = (activity && activity.tidings) || {};
  const a = t.author || t.actor || {};
  const username = str(a.username) || str(activity && activity.actor).replace(/^user:/, '');
  return { username, display: str(a.display_name) || username };
}

const NOUNS = { note: 'note', article: 'article', image: 'photo', link: 'link' };

/** "note", "photo", "poll"…: what kind of thing the activity carries. */
export function nounOf(activity) {
  const type = activity && activity.object && typeof activity.object === 'object' ? str(activity.object.type) : '';
  return NOUNS[type.toLowerCase()] || (type ? type.toLowerCase() : 'message');
}

/** A short quote of the activity's object: its title, text or first text field. */
export function snippetOf(activity, max = 60) {
  const o = activity && activity.object && typeof activity.object === 'object' ? activity.object : {};
  const first = [o.name, o.content, o.summary, o.question].find((v) => typeof v === 'string' && v.trim())
    || Object.values(o).find((v) => typeof v === 'string' && v.trim() && v !== o.type) || '';
  const flat = first.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

const messageHref = (id) => `/a/${encodeURIComponent(id)}`;

/** A link to message `id` that names it ("note “Ship it”") once it is read. */
export function targetLink(id) {
  const link = h('a', { class: 'what', href: messageHref(id) });
  describeInto(link, id);
  return link;
}

/** "note “Ship it”" for a fetched activity, "message" until then, "retracted message" if gone. */
function describeInto(link, id) {
  link.textContent = 'message';
  target(id).then((found) => {
    if (!found) return;
    if (found.retracted) {
      link.textContent = 'retracted message';
      return;
    }
    const quote = snippetOf(found);
    link.textContent = quote ? `${nounOf(found)} “${quote}”` : nounOf(found);
  });
}

/**
 * The sentence for a notification item `{cursor, via, activity}`: an array of nodes, and the
 * in-app path the notification is about (for "open").
 */
export function noticeSentence(item) {
  const activity = item.activity || {};
  const actor = actorOf(activity);
  const who = h('a', { class: 'who', href: `/u/${encodeURIComponent(actor.username)}`, text: actor.display });
  const id = str(activity.id);
  const objectId = typeof activity.object === 'string' ? activity.object : '';
  switch (item.via) {
    case 'like':
    case 'share': {
      const what = targetLink(objectId);
      return { nodes: [who, item.via === 'like' ? ' liked your ' : ' shared your ', what], href: messageHref(objectId) };
    }
    case 'reply': {
      const parent = str(activity.inReplyTo);
      const what = h('a', { class: 'what', href: messageHref(parent || id) });
      if (parent) describeInto(what, parent);
      const quote = snippetOf(activity, 140);
      return {
        nodes: [who, ' replied to your ', what, quote && ': ', quote && h('q', { class: 'quote', text: quote })],
        href: messageHref(parent || id),
      };
    }
    case 'mention': {
      const quote = snippetOf(activity, 140);
      return {
        nodes: [who, ` mentioned you in ${/^[aeiou]/.test(nounOf(activity)) ? 'an' : 'a'} `, h('a', { class: 'what', href: messageHref(id), text: nounOf(activity) }),
          quote && ': ', quote && h('q', { class: 'quote', text: quote })],
        href: messageHref(id),
      };
    }
    case 'follow':
      return { nodes: [who, ' followed you.'], href: `/u/${encodeURIComponent(actor.username)}` };
    case 'join': {
      const circle = objectId.replace(/^circle:/, '');
      const href = `/c/${encodeURIComponent(circle)}?tab=members`;
      return { nodes: [who, ' joined your circle ', h('a', { class: 'what', href, text: circle })], href };
    }
    default:
      return {
        nodes: [who, ` ${str(activity.type).toLowerCase() || 'did something'}: `, h('a', { class: 'what', href: messageHref(id), text: 'see it' })],
        href: messageHref(id),
      };
  }
}
