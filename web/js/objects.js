// One custom element per object type. A type's template is the element named
// `tidings-object-<type in lowercase>`: registering that one element (see types/poll.js) is all a
// new type needs. Types without a template fall back to <tidings-object-generic>.
//
// Every template receives the shown activity through `.activity` and renders with DOM calls
// only: user content is text, never markup.

import { h, replace, safeUrl } from './dom.js';
import { isMediaUrl, mediaFigure } from './media.js';

/** Base class of object templates: set `.activity`, get a rendered element. */
export class TidingsObject extends HTMLElement {
  set activity(activity) {
    this._activity = activity;
    this.object = (activity && typeof activity.object === 'object' && activity.object) || {};
    replace(this, this.render(this.object, activity));
  }

  get activity() {
    return this._activity;
  }

  /** Override: returns nodes for the object. */
  render(object) {
    return text(object.content);
  }
}

/** A block of user text, line breaks kept, never parsed. */
export function text(value, cls = 'content') {
  if (typeof value !== 'string' || value === '') return null;
  return h('p', { class: cls, text: value });
}

/** A plain string field, or '' when absent or not a string. */
export function str(value) {
  return typeof value === 'string' ? value : '';
}

/** The custom-element tag for an object type. */
export function tagFor(type) {
  const slug = String(type || 'note').toLowerCase().replace(/[^a-z0-9-]/g, '-');
  const tag = `tidings-object-${slug}`;
  return customElements.get(tag) ? tag : 'tidings-object-generic';
}

/** Renders an activity's object with its type's template. */
export function objectElement(activity) {
  const type = activity && activity.object && activity.object.type;
  const el = document.createElement(tagFor(type));
  el.activity = activity;
  return el;
}

/** The object's images uploaded to this server (`attachment` entries with a media URL). */
export function mediaAttachments(o) {
  const list = Array.isArray(o.attachment) ? o.attachment : o.attachment ? [o.attachment] : [];
  return list.filter((a) => a && typeof a === 'object' && isMediaUrl(a.url));
}

/** A gallery of the object's uploaded images, each with its alt text as caption. */
function gallery(o) {
  const media = mediaAttachments(o);
  if (media.length === 0) return null;
  return h('div', { class: 'gallery' }, media.map((a) => h('figure', { class: 'photo' },
    mediaFigure(a),
    typeof a.name === 'string' && a.name && h('figcaption', { class: 'alt muted small', text: a.name }))));
}

class NoteObject extends TidingsObject {
  render(o) {
    return [text(str(o.name), 'title'), text(o.content), gallery(o)];
  }
}

class ArticleObject extends TidingsObject {
  render(o) {
    const content = str(o.content);
    const summary = str(o.summary) || (content.length > 280 ? `${content.slice(0, 280)}…` : content);
    return [
      h('h3', { class: 'title', text: str(o.name) || 'Untitled article' }),
      text(summary, 'content summary'),
      safeUrl(o.url) && h('p', { class: 'muted small' }, 'From ', h('span', { class: 'host', text: new URL(o.url).host })),
    ];
  }
}

class ImageObject extends TidingsObject {
  render(o) {
    const uploaded = gallery(o);
    if (uploaded) return [text(str(o.name), 'title'), uploaded, text(o.content)];
    const src = safeUrl(o.url);
    return [
      h('figure', { class: 'photo' },
        src && h('img', { src, alt: str(o.name) || str(o.content) || 'photo', loading: 'lazy' }),
        (str(o.name) || str(o.content)) && h('figcaption', { text: str(o.name) || str(o.content) })),
      str(o.name) && text(o.content),
    ];
  }
}

class LinkObject extends TidingsObject {
  render(o) {
    const url = safeUrl(o.url) || safeUrl(o.href);
    return [
      h('div', { class: 'link-card' },
        h('a', { href: url, rel: 'noopener noreferrer nofollow', target: '_blank', class: 'link-title', text: str(o.name) || url || 'link' }),
        url && h('span', { class: 'muted small host', text: new URL(url).host })),
      text(o.content),
    ];
  }
}

/** Any type without a template: its text fields as a definition list. */
class GenericObject extends TidingsObject {
  render(o) {
    const rows = Object.entries(o).filter(([k, v]) => k !== 'type' && k !== 'id' && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'));
    return [
      h('p', { class: 'muted small', text: `${str(o.type) || 'Object'}` }),
      rows.length > 0 && h('dl', { class: 'fields' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })])),
    ];
  }
}

customElements.define('tidings-object-note', NoteObject);
customElements.define('tidings-object-article', ArticleObject);
customElements.define('tidings-object-image', ImageObject);
customElements.define('tidings-object-link', LinkObject);
customElements.define('tidings-object-generic', GenericObject);
