// DOM helpers. User content only ever becomes text nodes or checked attributes: nothing here
// parses HTML, so a message cannot inject markup or script.

/**
 * Builds an element. `attrs`: `class`, `text`, `on<event>` (functions), `dataset`, booleans and
 * strings as attributes. Children: nodes, strings (as text), arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'href' || key === 'src') {
      const url = key === 'href' ? safeHref(value) : safeUrl(value);
      if (url) el.setAttribute(key, url);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, text, nested arrays). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces all children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** An absolute http(s) URL, or null: `javascript:` and friends never reach an attribute. */
export function safeUrl(raw) {
  if (typeof raw !== 'string') return null;
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** In-app paths ("/circles/eng") or safe absolute URLs. */
function safeHref(raw) {
  if (typeof raw === 'string' && raw.startsWith('/') && !raw.startsWith('//')) return raw;
  return safeUrl(raw);
}

/** "3 min ago" style time with the exact time as a tooltip. */
export function timeAgo(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return h('span', { text: '' });
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  const text =
    s < 45 ? 'just now'
    : s < 3600 ? `${Math.round(s / 60)} min ago`
    : s < 86400 ? `${Math.round(s / 3600)} h ago`
    : new Date(t).toLocaleDateString();
  return h('time', { datetime: iso, title: new Date(t).toLocaleString(), text });
}

/** A transient status message (role=status so screen readers hear it). */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', text: message });
  box.append(el);
  setTimeout(() => el.remove(), 5000);
}
