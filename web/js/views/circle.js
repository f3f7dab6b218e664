// A circle's page: its stream, its members (moderators approve, manage roles, remove), my
// subscriptions to it, and for the owner the archive switch.

import { h, replace, toast } from '../dom.js';
import { get, put, del, post, session } from '../api.js';
import { activityCard } from '../card.js';
import { pagedList } from '../paged.js';
import { circleBadges, membershipButton } from '../circles-ui.js';
import { subscriptionHelper, subscriptionList } from '../subs.js';
import { logPanel, reportsPanel } from '../moderation.js';

const TABS = [['stream', 'Stream'], ['members', 'Members'], ['subscriptions', 'My subscriptions'], ['log', 'Moderation log']];
/** Only the circle's owner, moderators and site admins see this tab. */
const REPORTS_TAB = ['reports', 'Reports'];

/** `/c/:name?tab=`. */
export async function circleView(root, { params, query }) {
  const [name] = params;
  const c = await get(`/circles/${encodeURIComponent(name)}`);
  const me = session.user;
  const role = c.my_membership && c.my_membership.state === 'active' ? c.my_membership.role : null;
  const moderates = role === 'owner' || role === 'moderator' || me.is_admin;
  const tabList = moderates ? [...TABS, REPORTS_TAB] : TABS;
  const tab = tabList.some(([t]) => t === query.get('tab')) ? query.get('tab') : 'stream';
  const rerender = () => circleView(root, { params, query: new URLSearchParams(location.search) });

  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Circle sections' },
    tabList.map(([t, label]) => h('a', { href: `/c/${encodeURIComponent(name)}?tab=${t}`, 'aria-current': t === tab ? 'page' : null, class: `tab tab-${t}`, text: label })));
  const panel = h('div', { class: 'tab-panel' });

  const archive = (role === 'owner' || me.is_admin) && !c.archived_at
    ? h('button', { type: 'button', class: 'ghost danger', id: 'archive', text: 'Archive' })
    : null;
  if (archive) {
    archive.addEventListener('click', async () => {
      if (archive.dataset.armed !== '1') {
        archive.dataset.armed = '1';
        archive.textContent = 'Archive for good? It becomes read-only.';
        return;
      }
      try {
        await post(`/circles/${encodeURIComponent(name)}/archive`);
        toast(`${name} is archived.`);
        rerender();
      } catch (e) { toast(e.message, 'error'); }
    });
  }

  replace(root, h('section', { class: 'panel circle-page', dataset: { circle: c.name } },
    h('div', { class: 'stream-head' },
      h('h1', { text: c.display_name }),
      h('span', { class: 'muted handle', text: c.name }),
      h('span', { class: 'grow' }),
      membershipButton(c, rerender)),
    c.description && h('p', { class: 'description', text: c.description }),
    h('p', { class: 'row wrap' }, circleBadges(c), h('span', { class: 'muted small', text: `owner: ${c.owner}` })),
    c.archived_at && h('p', { class: 'banner', role: 'note', text: 'This circle is archived: its stream is read-only.' }),
    h('div', { class: 'row wrap' },
      role && !c.archived_at && h('a', { href: `/compose?circle=${encodeURIComponent(c.name)}`, class: 'button', text: `Post to ${c.name}` }),
      archive),
    tabs,
    panel));

  if (tab === 'stream') {
    const list = pagedList({
      load: (before) => get(`/circles/${encodeURIComponent(name)}/stream${before ? `?before=${encodeURIComponent(before)}` : ''}`),
      card: (item) => activityCard(item),
      empty: h('p', { class: 'empty muted', text: 'No messages in this circle yet.' }),
    });
    replace(panel, list.element);
    await list.loadFirst();
    return () => list.stop();
  }
  if (tab === 'reports') {
    await reportsPanel(panel, c);
    return undefined;
  }
  if (tab === 'log') {
    await logPanel(panel, c);
    return undefined;
  }
  if (tab === 'members') {
    await membersPanel(panel, c, moderates, role);
    return undefined;
  }
  const subs = subscriptionList((expr) => expr.endsWith(`@${c.name}`) || expr.endsWith('@*'));
  replace(panel,
    h('p', { class: 'muted', text: `What of ${c.name} reaches your inbox. Joining subscribes you to *@${c.name}; narrow it to tags, e.g. release@${c.name}.` }),
    subs.element,
    subscriptionHelper({ circle: c.name, onDone: subs.refresh }));
  await subs.refresh();
  return undefined;
}

async function membersPanel(panel, c, moderates, myRole) {
  const path = (u) => `/circles/${encodeURIComponent(c.name)}/members/${encodeURIComponent(u)}`;
  const refresh = () => membersPanel(panel, c, moderates, myRole);
  const act = (fn, message) => async () => {
    try {
      await fn();
      toast(message);
    } catch (e) { toast(e.message, 'error'); }
    refresh();
  };
  const items = (await get(`/circles/${encodeURIComponent(c.name)}/members`)).items;
  const requests = items.filter((m) => m.state === 'requested');
  const active = items.filter((m) => m.state === 'active');
  const row = (m) => h('li', { class: 'member-row', dataset: { username: m.username } },
    h('a', { href: `/u/${encodeURIComponent(m.username)}`, text: m.username }),
    h('span', { class: 'badge role', text: m.role }),
    h('span', { class: 'grow' }),
    moderates && !c.archived_at && m.role !== 'owner' && m.state === 'active' && [
      myRole === 'owner' && (m.role === 'member'
        ? h('button', { type: 'button', class: 'ghost promote', onclick: act(() => put(path(m.username), { role: 'moderator' }), `${m.username} is now a moderator.`), text: 'Make moderator' })
        : h('button', { type: 'button', class: 'ghost demote', onclick: act(() => put(path(m.username), { role: 'member' }), `${m.username} is now a member.`), text: 'Make member' })),
      h('button', { type: 'button', class: 'ghost danger remove', onclick: act(() => del(path(m.username)), `${m.username} was removed.`), text: 'Remove' }),
    ]);
  const add = h('form', { class: 'row', id: 'add-member' },
    h('input', { name: 'username', placeholder: 'username', 'aria-label': 'Username to add', required: true }),
    h('button', { type: 'submit', text: 'Add member' }));
  add.addEventListener('submit', (e) => {
    e.preventDefault();
    const u = add.elements.username.value.trim();
    if (u) act(() => put(path(u)), `${u} was added.`)();
  });
  replace(panel,
    moderates && requests.length > 0 && h('section', { class: 'requests' },
      h('h2', { text: `Requests (${requests.length})` }),
      h('ul', { class: 'member-list' }, requests.map((m) => h('li', { class: 'member-row request', dataset: { username: m.username } },
        h('a', { href: `/u/${encodeURIComponent(m.username)}`, text: m.username }),
        h('span', { class: 'grow' }),
        h('button', { type: 'button', class: 'approve', onclick: act(() => put(path(m.username)), `${m.username} is in.`), text: 'Approve' }),
        h('button', { type: 'button', class: 'ghost danger reject', onclick: act(() => del(path(m.username)), `Request of ${m.username} declined.`), text: 'Decline' }))))),
    h('h2', { text: `Members (${active.length})` }),
    h('ul', { class: 'member-list' }, active.map(row)),
    moderates && !c.archived_at && add);
}
