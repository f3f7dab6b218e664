// Compose: text, type (built-in or registered), tags, audience (public, circles, people),
// actions (name + URL) and reply-to. Sends one POST /outbox.

import { h, replace, toast } from '../dom.js';
import { api, get, session } from '../api.js';
import { navigate } from '../nav.js';
import { activityCard } from '../card.js';
import { uploadMedia } from '../media.js';

const BUILT_IN = ['Note', 'Article', 'Image', 'Link'];

/** Splits "a, b c" into ["a", "b", "c"], dropping a leading # or @. */
export function words(text) {
  return String(text).split(/[\s,]+/).map((w) => w.replace(/^[#@]/, '')).filter(Boolean);
}

/** Publishes through the API; an idempotency key makes a double submit harmless. */
export function publish(activity, key) {
  return api('POST', '/outbox?wait=routed', activity, { headers: { 'idempotency-key': key } });
}

function newKey() {
  return (crypto.randomUUID && crypto.randomUUID()) || `${Date.now()}-${Math.random()}`;
}

/** A small reply form under a message; the engine gives a reply its parent's audience. */
export function replyBox(parent, onSent) {
  const text = h('textarea', { name: 'reply', rows: 2, required: true, placeholder: 'Write a reply', 'aria-label': 'Reply' });
  const error = h('p', { class: 'error', role: 'alert' });
  let key = newKey();
  const form = h('form', { class: 'reply-box', id: 'reply-form' }, text, error, h('button', { type: 'submit', text: 'Reply' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      await publish({ type: 'Create', object: { type: 'Note', content: text.value }, inReplyTo: parent.id }, key);
      key = newKey();
      text.value = '';
      if (onSent) onSent();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

/** `/compose?circle=NAME&reply=ID`. */
export async function composeView(root, { query }) {
  const me = session.user;
  const [types, memberships, parent, groups] = await Promise.all([
    get('/types').then((t) => t.items.filter((x) => x.kind === 'object')).catch(() => []),
    get(`/users/${encodeURIComponent(me.username)}/circles`).then((m) => m.items.filter((x) => x.state === 'active')).catch(() => []),
    query.get('reply') ? get(`/activities/${encodeURIComponent(query.get('reply'))}`).catch(() => null) : Promise.resolve(null),
    get('/groups').then((g) => g.items).catch(() => []),
  ]);
  const preset = query.get('circle');
  const error = h('p', { class: 'error', role: 'alert', id: 'compose-error' });
  const type = h('select', { name: 'type', id: 'compose-type' },
    BUILT_IN.map((t) => h('option', { value: t, text: t === 'Image' ? 'Image (photo)' : t })),
    types.map((t) => h('option', { value: t.name, text: `${t.name} (custom)` })));
  const title = h('input', { name: 'name', id: 'compose-title', maxlength: 300 });
  const content = h('textarea', { name: 'content', id: 'compose-content', rows: 5 });
  const url = h('input', { name: 'url', id: 'compose-url', type: 'url', placeholder: 'https://…' });
  const file = h('input', { name: 'file', id: 'compose-file', type: 'file', accept: 'image/jpeg,image/png,image/gif,image/webp' });
  const alt = h('input', { name: 'alt', id: 'compose-alt', maxlength: 1500, placeholder: 'What the photo shows, for people who cannot see it' });
  const custom = h('div', { class: 'custom-fields' });
  const tags = h('input', { name: 'tags', id: 'compose-tags', placeholder: 'release, design' });
  const isPublic = h('input', { type: 'checkbox', name: 'public', id: 'compose-public', checked: !preset && !query.get('reply') });
  const circleBoxes = memberships.map((m) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'circle', value: m.circle, checked: m.circle === preset }), h('span', { text: m.circle })));
  const people = h('input', { name: 'people', id: 'compose-people', placeholder: 'ana, bob' });
  const actions = h('div', { class: 'action-rows' });
  const addAction = () => actions.append(h('div', { class: 'row action-row' },
    h('input', { name: 'action-name', placeholder: 'read', 'aria-label': 'Action label', pattern: '[a-z0-9_\\-]{1,63}', title: 'lowercase letters, digits, - or _' }),
    h('input', { name: 'action-url', type: 'url', placeholder: 'https://…', 'aria-label': 'Action URL' }),
    h('select', { name: 'action-method', 'aria-label': 'Method' }, ['GET', 'POST'].map((m) => h('option', { value: m, text: m }))),
    h('button', { type: 'button', class: 'ghost', text: 'Remove', onclick: (e) => e.currentTarget.parentElement.remove() })));

  const titleField = h('label', { class: 'field' }, h('span', { text: 'Title' }), title);
  const urlField = h('label', { class: 'field' }, h('span', { text: 'URL' }), url);
  const contentField = h('label', { class: 'field' }, h('span', { text: 'Text' }), content);
  const photoFields = h('div', { class: 'photo-fields' },
    h('label', { class: 'field' }, h('span', { text: 'Photo (JPEG, PNG, GIF, WebP)' }), file),
    h('label', { class: 'field' }, h('span', { text: 'Alt text' }), alt));
  const shape = () => {
    const t = type.value;
    titleField.hidden = t === 'Note' ? false : !BUILT_IN.includes(t);
    titleField.firstChild.textContent = t === 'Image' ? 'Caption' : t === 'Note' ? 'Title (optional)' : 'Title';
    urlField.hidden = !(t === 'Article' || t === 'Link' || t === 'Image');
    urlField.firstChild.textContent = t === 'Image' ? 'Image URL (or upload a photo below)' : 'URL';
    url.required = t === 'Link' || (t === 'Image' && !file.files.length);
    photoFields.hidden = !(t === 'Image' || t === 'Note');
    contentField.hidden = !BUILT_IN.includes(t);
    const def = types.find((x) => x.name === t);
    const props = def && def.schema && typeof def.schema.properties === 'object' ? Object.entries(def.schema.properties) : [];
    replace(custom, props.map(([k, s]) => h('label', { class: 'field' },
      h('span', { text: `${k}${s && s.type === 'array' ? ' (one per line)' : ''}` }),
      s && s.type === 'array' ? h('textarea', { name: `custom-${k}`, dataset: { field: k, kind: 'array' }, rows: 3 }) : h('input', { name: `custom-${k}`, dataset: { field: k, kind: (s && s.type) || 'string' } }))));
  };
  type.addEventListener('change', shape);
  file.addEventListener('change', shape);
  shape();

  let key = newKey();
  const form = h('form', { class: 'panel compose', id: 'compose' },
    h('h1', { text: parent ? 'Reply' : 'Compose' }),
    parent && h('div', { class: 'replying' }, h('p', { class: 'muted small', text: 'Replying to' }), activityCard({ activity: parent })),
    h('label', { class: 'field' }, h('span', { text: 'Type' }), type),
    titleField, contentField, urlField, photoFields, custom,
    h('label', { class: 'field' }, h('span', { text: 'Tags' }), tags),
    h('fieldset', {}, h('legend', { text: 'Audience' }),
      h('label', { class: 'check' }, isPublic, h('span', { text: 'Public' })),
      circleBoxes,
      // A group reaches its members as they are when you publish (decision 0027).
      groups.map((g) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'group', value: g.address }),
        h('span', { text: `Group ${g.circle ? `${g.name} (${g.circle})` : g.name} · ${g.members.length} ${g.members.length === 1 ? 'person' : 'people'}` }))),
      h('label', { class: 'field' }, h('span', { text: 'People (usernames)' }), people)),
    h('fieldset', {}, h('legend', { text: 'Actions' }),
      h('p', { class: 'muted small', text: 'Named links the message carries, e.g. read → the blog post.' }),
      actions,
      h('button', { type: 'button', class: 'ghost', id: 'add-action', text: 'Add action', onclick: addAction })),
    error,
    h('div', { class: 'row' }, h('button', { type: 'submit', id: 'publish', text: 'Publish' }), h('a', { href: '/', class: 'button ghost', text: 'Cancel' })));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const t = type.value;
    const object = { type: t };
    if (BUILT_IN.includes(t)) {
      if (title.value.trim()) object.name = title.value.trim();
      if (content.value) object.content = content.value;
      if (!urlField.hidden && url.value.trim()) object.url = url.value.trim();
    }
    for (const input of custom.querySelectorAll('[data-field]')) {
      const v = input.value;
      if (!v.trim()) continue;
      const kind = input.dataset.kind;
      object[input.dataset.field] = kind === 'array' ? v.split('\n').map((x) => x.trim()).filter(Boolean)
        : kind === 'number' || kind === 'integer' ? Number(v) : kind === 'boolean' ? v === 'true' : v;
    }
    const to = [];
    if (isPublic.checked) to.push('public');
    for (const box of form.querySelectorAll('input[name=circle]:checked')) to.push(`circle:${box.value}`);
    for (const box of form.querySelectorAll('input[name=group]:checked')) to.push(box.value);
    for (const p of words(people.value)) to.push(`user:${p}`);
    const acts = [...actions.querySelectorAll('.action-row')]
      .map((row) => ({ name: row.children[0].value.trim(), url: row.children[1].value.trim(), method: row.children[2].value }))
      .filter((a) => a.name || a.url);
    const activity = { type: 'Create', object, to, tag: words(tags.value) };
    if (acts.length) activity.actions = acts;
    if (parent) activity.inReplyTo = parent.id;
    const button = form.querySelector('#publish');
    button.disabled = true;
    try {
      if (!photoFields.hidden && file.files.length) {
        // Uploaded first; the post then carries the media object's ready-made attachment.
        const media = await uploadMedia(file.files[0], alt.value.trim());
        object.attachment = [media.attachment];
        // An Image object's own url is its picture: the upload's (absolute, as object urls are).
        if (t === 'Image') object.url = new URL(media.url, window.location.origin).href;
      }
      await publish(activity, key);
      key = newKey();
      toast('Published.');
      navigate(parent ? `/a/${encodeURIComponent(parent.id)}` : '/');
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
  replace(root, form);
  return undefined;
}
