// A list of cards read page by page with opaque cursors (`next` → `before`), loading the next
// page when its end scrolls into view; the button stays for keyboards and old browsers.

import { h, replace, toast } from './dom.js';

/** `load(before)` resolves to a page; `card(item)` builds one entry. */
export function pagedList({ load, card, empty }) {
  const items = h('div', { class: 'cards', role: 'feed', 'aria-busy': 'false' });
  const more = h('button', { type: 'button', class: 'ghost load-more', text: 'Load older', hidden: true });
  const element = h('div', { class: 'paged' }, items, more);
  const cursors = new Set();
  let next = null;
  let loading = false;

  const add = (page) => {
    for (const item of page.items) {
      if (item.cursor) cursors.add(item.cursor);
      items.append(card(item));
    }
    next = page.next || null;
    more.hidden = !next;
  };

  const loadMore = async () => {
    if (loading || !next) return;
    loading = true;
    items.setAttribute('aria-busy', 'true');
    try {
      add(await load(next));
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      loading = false;
      items.setAttribute('aria-busy', 'false');
    }
  };
  more.addEventListener('click', loadMore);
  const observer = 'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); }, { rootMargin: '400px' })
    : null;
  if (observer) observer.observe(more);

  return {
    element,
    has: (cursor) => cursors.has(cursor),
    /** Whether no card is shown (the empty note, or nothing, is). */
    showsNothing: () => !items.querySelector('.card'),
    async loadFirst() {
      const page = await load(undefined);
      replace(items);
      add(page);
      if (page.items.length === 0 && empty) items.append(empty);
      return page;
    },
    prepend(newItems) {
      const emptyNote = items.querySelector('.empty');
      if (emptyNote) emptyNote.remove();
      for (const item of [...newItems].reverse()) {
        if (item.cursor) {
          if (cursors.has(item.cursor)) continue;
          cursors.add(item.cursor);
        }
        items.prepend(card(item));
      }
    },
    stop() {
      if (observer) observer.disconnect();
    },
  };
}
