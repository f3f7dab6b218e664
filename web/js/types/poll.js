// Template of the custom `Poll` object type (registered by an admin through POST /api/v1/types):
// a question and its options. This file is the whole plug-in: one element, one import in index.js.

import { h } from '../dom.js';
import { TidingsObject, str } from '../objects.js';

class PollObject extends TidingsObject {
  render(o) {
    const options = Array.isArray(o.options) ? o.options.filter((x) => typeof x === 'string') : [];
    return [
      h('p', { class: 'title', text: `Poll: ${str(o.question)}` }),
      options.length > 0 && h('ol', { class: 'poll-options' }, options.map((x) => h('li', { text: x }))),
    ];
  }
}

customElements.define('tidings-object-poll', PollObject);
