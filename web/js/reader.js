// The reader an action opens (e.g. "read" on a blog post): the object's own text in a dialog,
// with the original URL one click away.

import { h, safeUrl } from './dom.js';
import { objectElement, str } from './objects.js';

/** Opens the reader for `activity`, pointing at `url`. */
export function openReader(activity, url, actionName) {
  const o = (activity && activity.object) || {};
  const href = safeUrl(url);
  const close = () => { dialog.close(); dialog.remove(); };
  const dialog = h('dialog', { class: 'reader', 'aria-label': 'reader' },
    h('header', { class: 'reader-head' },
      h('span', { class: 'muted small', text: actionName ? `Action: ${actionName}` : 'Reader' }),
      h('button', { type: 'button', class: 'ghost', onclick: close, text: 'Close' })),
    h('h2', { text: str(o.name) || 'Message' }),
    str(o.type) === 'Article' && str(o.content) ? h('div', { class: 'reader-body' }, h('p', { class: 'content', text: str(o.content) })) : objectElement(activity),
    href && h('p', {}, h('a', { class: 'button', href, target: '_blank', rel: 'noopener noreferrer', text: 'Open the original' })),
  );
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
