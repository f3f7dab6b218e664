// A person's page: who they are, Follow / Unfollow, their follower and following counts, and
// tabs for their outbox, their followers and whom they follow (each person a link), plus their
// circles.

import { h, replace, timeAgo, toast } from '../dom.js';
import { get, post, del, qs, session } from '../api.js';
import { activityCard } from '../card.js';
import { pagedList } from '../paged.js';

const TABS = [['outbox', 'Outbox'], ['followers', 'Followers'], ['following', 'Following']];
const userPath = (name) => `/users/${encodeURIComponent(name)}`;

/** One person in a followers / following list. */
function personRow(item) {
  const u = item.user || {};
  return h('div', { class: 'person-row', role: 'listitem', dataset: { username: u.username || '' } },
    h('a', { class: 'author', href: `/u/${encodeURIComponent(u.username || '')}`, text: u.display_name || u.username }),
    h('span', { class: 'muted handle', text: `@${u.username}` }),
    h('span', { class: 'muted small' }, 'since ', timeAgo(item.since)));
}

/** `/u/:name?tab=`. */
export async function profileView(root, { params, query }) {
  const [name] = params;
  const tab = TABS.some(([t]) => t === query.get('tab')) ? query.get('tab') : 'outbox';
  const me = session.user;
  const [user, followers, following] = await Promise.all([
    get(userPath(name)),
    get(`${userPath(name)}/followers${qs({ limit: 1 })}`),
    get(`${userPath(name)}/following${qs({ limit: 1 })}`),
  ]);
  const mine = me && me.username === user.username;
  let circles = [];
  try {
    circles = (await get(`${userPath(name)}/circles`)).items.filter((m) => m.state === 'active');
  } catch { /* a profile still shows without its circles */ }

  const followerCount = h('strong', { class: 'count', text: String(followers.total) });
  const followingCount = h('strong', { class: 'count', text: String(following.total) });
  const followerLabel = h('span', { text: followers.total === 1 ? ' follower' : ' followers' });
  const setFollowerCount = (n) => {
    followers.total = n;
    followerCount.textContent = String(n);
    followerLabel.textContent = n === 1 ? ' follower' : ' followers';
  };
  const tabHref = (t) => `/u/${encodeURIComponent(user.username)}${t === 'outbox' ? '' : `?tab=${t}`}`;
  const counts = h('p', { class: 'row wrap follow-counts' },
    h('a', { href: tabHref('followers'), class: 'followers-count' }, followerCount, followerLabel),
    h('a', { href: tabHref('following'), class: 'following-count' }, followingCount, ' following'));

  let list = null;
  const followButton = mine ? null : await makeFollowButton(user, (delta) => {
    setFollowerCount(Math.max(0, followers.total + delta));
    if (tab === 'followers' && list) list.loadFirst();
  });

  if (tab === 'outbox') {
    list = pagedList({
      load: (before) => get(`${userPath(name)}/outbox${qs({ before })}`),
      card: (item) => activityCard(item),
      empty: h('p', { class: 'muted empty', text: 'Nothing published yet.' }),
    });
  } else {
    list = pagedList({
      load: (before) => get(`${userPath(name)}/${tab}${qs({ before, limit: 20 })}`),
      card: personRow,
      empty: h('p', { class: 'muted empty', text: tab === 'followers' ? 'No followers yet.' : 'Follows no one yet.' }),
    });
    // People are a list, not a feed of cards.
    const people = list.element.querySelector('.cards');
    people.setAttribute('role', 'list');
    people.classList.add('people-list');
  }

  replace(root, h('div', { class: 'profile', dataset: { username: user.username } },
    h('section', { class: 'panel' },
      h('div', { class: 'stream-head' },
        h('h1', { text: user.display_name || user.username }),
        h('span', { class: 'grow' }),
        followButton),
      h('p', { class: 'muted handle', text: `@${user.username}${user.status !== 'active' ? ` · ${user.status}` : ''}` }),
      h('p', { class: 'muted small', text: `Joined ${new Date(user.created_at).toLocaleDateString()}` }),
      counts,
      mine && h('p', {}, h('a', { href: '/subscriptions', text: 'My subscriptions' })),
      h('h2', { text: 'Circles' }),
      circles.length === 0
        ? h('p', { class: 'muted', text: 'No circles.' })
        : h('ul', { class: 'chips' }, circles.map((m) => h('li', {}, h('a', { class: 'chip circle', href: `/c/${encodeURIComponent(m.circle)}`, text: `${m.circle} · ${m.role}` }))))),
    h('nav', { class: 'tabs', 'aria-label': 'Profile sections' },
      TABS.map(([t, label]) => h('a', { href: tabHref(t), 'aria-current': t === tab ? 'page' : null, class: `tab tab-${t}`, text: label }))),
    h('section', { class: tab, 'aria-label': TABS.find(([t]) => t === tab)[1] }, list.element)));
  await list.loadFirst();
  return () => list.stop();
}

/**
 * Follow / Unfollow for someone else's profile, with "Follows you" beside it when they do;
 * `changed(+1|-1)` when the follow changes.
 */
async function makeFollowButton(user, changed) {
  let following = false;
  let followedBy = false;
  try {
    ({ following, followed_by: followedBy } = await get(`${userPath(user.username)}/follow`));
  } catch { /* unknown: offer Follow, the server will say if it already is */ }
  const button = h('button', { type: 'button', id: 'follow-button' });
  const paint = () => {
    button.textContent = following ? 'Unfollow' : 'Follow';
    button.className = following ? 'ghost unfollow' : 'follow';
    button.setAttribute('aria-label', `${following ? 'Unfollow' : 'Follow'} ${user.display_name || user.username}`);
  };
  paint();
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      if (following) {
        await del(`${userPath(user.username)}/follow`);
        following = false;
        changed(-1);
        toast(`You no longer follow ${user.username}.`);
      } else {
        await post(`${userPath(user.username)}/follow`);
        following = true;
        changed(+1);
        toast(`You follow ${user.username}.`);
      }
    } catch (e) {
      // Another device already did it: take the server's word for the state.
      if (e.code === 'already_following') following = true;
      else if (e.code === 'not_following') following = false;
      else toast(e.message, 'error');
    } finally {
      button.disabled = false;
      paint();
      button.focus();
    }
  });
  if (!followedBy) return button;
  return h('span', { class: 'row' }, button, h('span', { class: 'chip follows-you', text: 'Follows you' }));
}
