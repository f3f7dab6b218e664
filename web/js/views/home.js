// Home: the inbox, live. New items wait behind an "N new" bar instead of moving the page;
// filters (circles, tags, kind) are URL arguments; older pages load by cursor as you scroll.

import { h, replace } from '../dom.js';
import { get, qs, session } from '../api.js';
import { navigate } from '../nav.js';
import { activityCard } from '../card.js';
import { bindInbox } from '../live.js';
import { pagedList } from '../paged.js';

function readFilter(query) {
  return {
    circles: (query.get('circles') || '').split(',').map((s) => s.trim()).filter(Boolean),
    tags: (query.get('tags') || '').split(',').map((s) => s.trim().replace(/^#/, '')).filter(Boolean),
    kind: query.get('kind') || '',
  };
}

/** `/`. */
export async function homeView(root, { query }) {
  const filter = readFilter(query);
  const apiFilter = { circles: filter.circles, tags: filter.tags, kind: filter.kind };
  const me = session.user;
  let circles = [];
  try {
    circles = (await get(`/users/${encodeURIComponent(me.username)}/circles`)).items.filter((m) => m.state === 'active');
  } catch { /* filters still work by typing */ }

  const apply = (next) => {
    const url = `/${qs({ circles: next.circles, tags: next.tags, kind: next.kind })}`;
    navigate(url, { replace: true });
  };

  const tagInput = h('input', { id: 'filter-tags', name: 'tags', placeholder: 'release, urgent', value: filter.tags.join(', ') });
  const kindSelect = h('select', { id: 'filter-kind', name: 'kind' },
    [['', 'Everything'], ['major', 'Major (posts)'], ['minor', 'Minor (replies, reactions)'], ['direct', 'Direct (to me)']]
      .map(([v, t]) => h('option', { value: v, selected: filter.kind === v, text: t })));
  const circleBoxes = circles.map((m) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'circle', value: m.circle, checked: filter.circles.includes(m.circle) }),
    h('span', { text: m.circle })));
  const filters = h('form', { class: 'filters panel', id: 'filters', 'aria-label': 'Filter the inbox' },
    h('h2', { class: 'small-heading', text: 'Filter' }),
    h('label', { class: 'field' }, h('span', { text: 'Show' }), kindSelect),
    circleBoxes.length > 0 && h('fieldset', {}, h('legend', { text: 'Circles' }), circleBoxes),
    h('label', { class: 'field' }, h('span', { text: 'Tags' }), tagInput),
    h('div', { class: 'row' },
      h('button', { type: 'submit', text: 'Apply' }),
      (filter.circles.length || filter.tags.length || filter.kind) && h('a', { href: '/', class: 'button ghost', text: 'Clear' })));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    apply({
      circles: [...filters.querySelectorAll('input[name=circle]:checked')].map((i) => i.value),
      tags: tagInput.value.split(/[\s,]+/).map((t) => t.replace(/^#/, '')).filter(Boolean),
      kind: kindSelect.value,
    });
  });
  kindSelect.addEventListener('change', () => filters.requestSubmit());

  const pending = [];
  const bar = h('button', { type: 'button', id: 'new-bar', class: 'new-bar', hidden: true });
  const list = pagedList({
    load: (before) => get(`/inbox${qs({ ...apiFilter, before, limit: 20 })}`),
    card: (item) => activityCard(item, { inInbox: true }),
    empty: h('div', { class: 'empty' },
      h('p', { text: 'Nothing here yet.' }),
      h('p', {}, h('a', { href: '/circles', text: 'Find circles to join' }), ' or ', h('a', { href: '/compose', text: 'write something' }), '.')),
  });
  bar.addEventListener('click', () => {
    list.prepend(pending.splice(0).reverse());
    bar.hidden = true;
    window.scrollTo({ top: 0 });
    const first = list.element.querySelector('.card a, .card button');
    if (first) first.focus({ preventScroll: true });
  });

  replace(root,
    h('div', { class: 'home' },
      h('section', { class: 'stream', 'aria-labelledby': 'inbox-title' },
        h('div', { class: 'stream-head' },
          h('h1', { id: 'inbox-title', text: 'Inbox' }),
          h('span', { class: 'live-dot', title: 'live', 'aria-hidden': 'true' }),
          h('a', { href: '/compose', class: 'button', text: 'New message' })),
        bar,
        list.element),
      filters));

  const first = await list.loadFirst();
  const unbind = bindInbox({
    filter: apiFilter,
    after: first && (first.prev || (first.items[0] && first.items[0].cursor)),
    onItem: (item) => {
      if (list.has(item.cursor)) return;
      // Nothing on screen to keep in place: show the item instead of a bar over an empty list.
      if (list.showsNothing() && pending.length === 0) {
        list.prepend([item]);
        return;
      }
      pending.push(item);
      bar.textContent = `${pending.length} new ${pending.length === 1 ? 'item' : 'items'} — show`;
      bar.hidden = false;
    },
  });
  return () => {
    unbind();
    list.stop();
  };
}
