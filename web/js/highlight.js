// Search highlights: the API sends escaped text with <mark>…</mark> around matched words. They
// are rebuilt as text nodes and <mark> elements (never parsed as HTML, as everywhere else).

import { h } from './dom.js';

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" };

/** The text of an escaped piece. */
function unescapeText(text) {
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, name) => ENTITIES[name]);
}

/** Nodes for a highlighted string: text, with matched words in <mark>. */
export function marked(highlighted) {
  const nodes = [];
  let inMark = false;
  for (const part of String(highlighted || '').split(/(<mark>|<\/mark>)/)) {
    if (part === '<mark>') inMark = true;
    else if (part === '</mark>') inMark = false;
    else if (part) nodes.push(inMark ? h('mark', { text: unescapeText(part) }) : unescapeText(part));
  }
  return nodes;
}
