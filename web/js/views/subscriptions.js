// `/subscriptions`: everything my inbox is bound to, and the helper to add more.

import { h, replace } from '../dom.js';
import { subscriptionHelper, subscriptionList } from '../subs.js';

/** `/subscriptions`. */
export async function subscriptionsView(root) {
  const list = subscriptionList();
  replace(root, h('section', { class: 'panel' },
    h('h1', { text: 'Subscriptions' }),
    h('p', { class: 'muted', text: 'Your inbox receives what matches these tag@circle expressions; * means any.' }),
    list.element,
    h('h2', { text: 'Add a subscription' }),
    subscriptionHelper({ onDone: list.refresh })));
  await list.refresh();
}
