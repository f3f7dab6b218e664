// `tag@circle` subscriptions: a list with unsubscribe, and a helper that builds the expression.

import { h, replace, toast } from './dom.js';
import { get, post, del } from './api.js';

/** A list of subscriptions; `only(expr)` picks which to show. */
export function subscriptionList(only = () => true) {
  const list = h('ul', { class: 'sub-list' });
  const refresh = async () => {
    const subs = (await get('/subscriptions')).items.filter((s) => only(s.expr));
    replace(list, subs.length === 0
      ? h('li', { class: 'muted', text: 'No subscriptions here.' })
      : subs.map((s) => h('li', { class: 'sub-row', dataset: { expr: s.expr } },
        h('code', { text: s.expr }),
        h('button', { type: 'button', class: 'ghost', text: 'Unsubscribe', onclick: async () => {
          try {
            await del(`/subscriptions/${s.id}`);
            toast(`Unsubscribed from ${s.expr}.`);
            refresh();
          } catch (e) { toast(e.message, 'error'); }
        } }))));
  };
  return { element: list, refresh };
}

/**
 * The expression builder: a tag (or any) and a circle (or any) become `tag@circle`, shown as
 * it is typed; the server's parse errors come back with their position.
 */
export function subscriptionHelper({ circle = '', onDone } = {}) {
  const tag = h('input', { name: 'sub-tag', id: 'sub-tag', placeholder: 'any tag', 'aria-label': 'Tag (empty for any)' });
  const where = h('input', { name: 'sub-circle', id: 'sub-circle', placeholder: 'any circle', value: circle, 'aria-label': 'Circle (empty for any)' });
  const preview = h('code', { class: 'expr-preview', id: 'sub-preview' });
  const raw = h('input', { name: 'sub-expr', id: 'sub-expr', placeholder: 'or type an expression: release@eng', 'aria-label': 'Expression' });
  const error = h('p', { class: 'error', role: 'alert' });
  const build = () => `${tag.value.trim().replace(/^#/, '') || '*'}@${where.value.trim() || '*'}`;
  const update = () => { preview.textContent = raw.value.trim() || build(); };
  for (const i of [tag, where, raw]) i.addEventListener('input', update);
  update();
  const form = h('form', { class: 'sub-helper' },
    h('div', { class: 'row wrap' },
      h('label', { class: 'field' }, h('span', { text: 'Tag' }), tag),
      h('span', { class: 'at', text: '@' }),
      h('label', { class: 'field' }, h('span', { text: 'Circle' }), where)),
    h('label', { class: 'field' }, h('span', { text: 'Expression' }), raw),
    h('p', { class: 'muted small' }, 'Subscribes to ', preview),
    error,
    h('button', { type: 'submit', text: 'Subscribe' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const expr = raw.value.trim() || build();
    try {
      await post('/subscriptions', { expr });
      toast(`Subscribed to ${expr}.`);
      tag.value = '';
      raw.value = '';
      update();
      if (onDone) onDone();
    } catch (err) {
      const pos = err.details && typeof err.details.position === 'number' ? ` (at character ${err.details.position + 1})` : '';
      error.textContent = `${err.message}${pos}`;
    }
  });
  return form;
}
