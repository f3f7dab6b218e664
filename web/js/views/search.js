// `/search?q=…`: activities, circles or people, with highlighted matches, filters and paging.

import { h, replace } from '../dom.js';
import { get, post, qs } from '../api.js';
import { activityCard } from '../card.js';
import { pagedList } from '../paged.js';
import { marked } from '../highlight.js';
import { circleBadges } from '../circles-ui.js';

const FILTERS = ['circle', 'author', 'tag'];

/** The query string of a search page for these arguments (empty ones left out). */
function searchPath(args) {
  return `/search${qs(args)}`;
}

/** One result: its highlighted title and snippet above the card. */
function resultCard(item, type) {
  const hl = item.highlight || {};
  const snippet = hl.snippet ? h('p', { class: 'snippet', dataset: { kind: 'snippet' } }, marked(hl.snippet)) : null;
  if (type === 'circles' && item.circle) {
    const c = item.circle;
    return h('article', { class: 'card result', dataset: { circle: c.name } },
      h('a', { class: 'circle-name result-title', href: `/c/${encodeURIComponent(c.name)}` }, marked(hl.title)),
      h('span', { class: 'muted handle', text: ` ${c.name}` }),
      snippet,
      circleBadges(c));
  }
  if (type === 'people' && item.user) {
    const u = item.user;
    return h('article', { class: 'card result', dataset: { user: u.username } },
      h('a', { class: 'author result-title', href: `/u/${encodeURIComponent(u.username)}` }, marked(hl.title)),
      h('span', { class: 'muted handle' }, '@', marked(hl.snippet)));
  }
  const wrapper = h('div', { class: 'result', dataset: { id: (item.activity && item.activity.id) || '' } },
    hl.title ? h('p', { class: 'result-title' }, marked(hl.title)) : null,
    snippet,
    activityCard(item));
  return wrapper;
}

/** `/search`. */
export async function searchView(root, { query }) {
  const args = {
    q: query.get('q') || '',
    type: query.get('type') || 'activities',
    sort: query.get('sort') || 'newest',
  };
  for (const f of FILTERS) args[f] = query.get(f) || '';
  const input = h('input', { type: 'search', name: 'q', id: 'search-q', value: args.q, placeholder: 'Words, "a phrase", -exclude, from:ana, in:eng, tag:release', 'aria-label': 'Search' });
  const option = (value, text, current) => h('option', { value, text, selected: value === current });
  const type = h('select', { name: 'type', id: 'search-type', 'aria-label': 'What to find' },
    option('activities', 'Posts', args.type), option('circles', 'Circles', args.type), option('people', 'People', args.type));
  const sort = h('select', { name: 'sort', id: 'search-sort', 'aria-label': 'Order' },
    option('newest', 'Newest first', args.sort), option('best', 'Best match', args.sort));
  const filters = FILTERS.map((f) => h('input', { name: f, id: `search-${f}`, value: args[f], placeholder: f, 'aria-label': `Only this ${f}`, size: 10 }));
  const filterRow = h('div', { class: 'row filters', hidden: args.type !== 'activities' }, filters);
  const error = h('p', { class: 'error', role: 'alert', id: 'search-error' });
  const status = h('p', { class: 'muted', 'aria-live': 'polite', id: 'search-status' });
  const results = h('div', { id: 'search-results' });
  // "Save as subscription": the query (with the author and tag filters as operators) as a
  // saved-search term, on the circle filter's circle or everywhere.
  const savedNote = h('p', { class: 'muted', 'aria-live': 'polite', id: 'search-saved' });
  const saveButton = h('button', { type: 'button', class: 'ghost', id: 'search-save', text: 'Save as subscription' });
  const savedTerm = () => {
    const parts = [input.value.trim()];
    if (filters[1].value.trim()) parts.push(`from:${filters[1].value.trim()}`);
    if (filters[2].value.trim()) parts.push(`tag:${filters[2].value.trim()}`);
    const circle = filters[0].value.trim();
    return `"${parts.filter(Boolean).join(' ')}"${circle ? `@${circle}` : ''}`;
  };
  saveButton.addEventListener('click', async () => {
    error.textContent = '';
    savedNote.textContent = '';
    const expr = savedTerm();
    try {
      await post('/subscriptions', { expr });
      savedNote.textContent = `Saved ${expr}: new matches will arrive in your inbox.`;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  const saveRow = h('div', { class: 'row', hidden: args.type !== 'activities' || !args.q }, saveButton, savedNote);
  const form = h('form', { class: 'search-form', role: 'search', id: 'search-form' },
    h('div', { class: 'row search' }, input, type, sort, h('button', { type: 'submit', text: 'Search' })),
    filterRow);

  const current = () => {
    const next = { q: input.value.trim() ? input.value : '', type: type.value, sort: sort.value };
    if (type.value === 'activities') for (const el of filters) next[el.name] = el.value.trim();
    if (next.type === 'activities') delete next.type;
    if (next.sort === 'newest') delete next.sort;
    return next;
  };

  const show = async (params) => {
    error.textContent = '';
    const kind = params.type || 'activities';
    const hasFilter = FILTERS.some((f) => params[f]);
    if (!params.q && !(kind === 'activities' && hasFilter) && kind === 'activities') {
      status.textContent = 'Type something to search for.';
      replace(results);
      return;
    }
    const list = pagedList({
      load: (before) => get(`/search${qs({ ...params, limit: 20, before })}`),
      card: (item) => resultCard(item, kind),
      empty: h('p', { class: 'empty', text: 'Nothing found.' }),
    });
    try {
      const page = await list.loadFirst();
      status.textContent = page.items.length ? '' : `No ${kind === 'activities' ? 'posts' : kind} match.`;
      replace(results, list.element);
    } catch (e) {
      replace(results);
      status.textContent = '';
      error.textContent = e.message;
    }
  };

  let timer;
  const refresh = () => {
    const params = current();
    filterRow.hidden = type.value !== 'activities';
    saveRow.hidden = type.value !== 'activities' || !input.value.trim();
    history.replaceState(null, '', searchPath(params));
    show(params);
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  type.addEventListener('change', refresh);
  sort.addEventListener('change', refresh);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    refresh();
  });

  replace(root, h('section', { class: 'panel' },
    h('h1', { text: 'Search' }),
    form,
    saveRow,
    error,
    status,
    results));
  const initial = { ...args };
  for (const key of Object.keys(initial)) if (!initial[key]) delete initial[key];
  if (initial.type === 'activities') delete initial.type;
  if (initial.sort === 'newest') delete initial.sort;
  await show(initial);
  return () => clearTimeout(timer);
}
