// Find circles (search and browse, biggest first) and create one.

import { h, replace } from '../dom.js';
import { get, post, qs } from '../api.js';
import { navigate } from '../nav.js';
import { circleBadges, membershipButton } from '../circles-ui.js';

/** `/circles?q=`. */
export async function circlesView(root, { query }) {
  const q = query.get('q') || '';
  const input = h('input', { type: 'search', name: 'q', id: 'circle-search', value: q, placeholder: 'Search by name or purpose', 'aria-label': 'Search circles' });
  const results = h('ul', { class: 'circle-list', id: 'circle-results', 'aria-live': 'polite' });
  const form = h('form', { class: 'row search', role: 'search' }, input, h('button', { type: 'submit', text: 'Search' }));

  const show = async (text) => {
    const page = await get(`/circles${qs({ q: text, limit: 50 })}`);
    replace(results, page.items.length === 0
      ? h('li', { class: 'empty', text: text ? `No circle matches “${text}”.` : 'No circles yet: create the first one.' })
      : page.items.map((c) => h('li', { class: 'circle-row', dataset: { name: c.name } },
        h('div', { class: 'grow' },
          h('a', { href: `/c/${encodeURIComponent(c.name)}`, class: 'circle-name', text: c.display_name }),
          h('span', { class: 'muted handle', text: ` ${c.name}` }),
          c.description && h('p', { class: 'muted', text: c.description }),
          circleBadges(c)),
        membershipButton(c, () => show(input.value.trim())))));
  };
  let timer;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      history.replaceState(null, '', `/circles${qs({ q: input.value.trim() })}`);
      show(input.value.trim());
    }, 250);
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    history.replaceState(null, '', `/circles${qs({ q: input.value.trim() })}`);
    show(input.value.trim());
  });

  replace(root, h('section', { class: 'panel' },
    h('div', { class: 'stream-head' }, h('h1', { text: 'Circles' }), h('a', { href: '/circles/new', class: 'button', text: 'New circle' })),
    form,
    results));
  await show(q);
  return () => clearTimeout(timer);
}

/** `/circles/new`. */
export function newCircleView(root) {
  const error = h('p', { class: 'error', role: 'alert' });
  const name = h('input', { name: 'name', required: true, pattern: '[a-z0-9_\\-]{1,63}', title: 'lowercase letters, digits, - or _' });
  const display = h('input', { name: 'display_name', maxlength: 100 });
  const description = h('textarea', { name: 'description', rows: 3, maxlength: 2000 });
  const visibility = h('select', { name: 'visibility' }, h('option', { value: 'public', text: 'Public: anyone can find it and read its stream' }), h('option', { value: 'private', text: 'Private: members only' }));
  const policy = h('select', { name: 'join_policy' }, h('option', { value: 'open', text: 'Open: anyone joins' }), h('option', { value: 'approval', text: 'Approval: moderators accept requests' }), h('option', { value: 'invite', text: 'Invite: moderators add people' }));
  const form = h('form', { class: 'panel narrow', id: 'new-circle' },
    h('h1', { text: 'New circle' }),
    h('label', { class: 'field' }, h('span', { text: 'Name (used in addresses: tag@name)' }), name),
    h('label', { class: 'field' }, h('span', { text: 'Display name' }), display),
    h('label', { class: 'field' }, h('span', { text: 'Description' }), description),
    h('label', { class: 'field' }, h('span', { text: 'Visibility' }), visibility),
    h('label', { class: 'field' }, h('span', { text: 'Join policy' }), policy),
    error,
    h('button', { type: 'submit', text: 'Create circle' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const c = await post('/circles', {
        name: name.value.trim(),
        display_name: display.value.trim() || undefined,
        description: description.value.trim(),
        visibility: visibility.value,
        join_policy: policy.value,
      });
      navigate(`/c/${encodeURIComponent(c.name)}`);
    } catch (err) {
      error.textContent = err.status === 409 ? 'A circle with that name exists already.' : err.message;
    }
  });
  replace(root, form);
}
