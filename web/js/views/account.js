// `/account`: the devices signed in to my account (sign one out), my password, deleting me.

import { h, replace, timeAgo, toast } from '../dom.js';
import { api, get, session } from '../api.js';
import { navigate } from '../nav.js';

function field(label, input) {
  return h('label', { class: 'field' }, h('span', { text: label }), input);
}

/** Friendly text for the account errors people actually meet. */
function accountMessage(e) {
  if (e.code === 'wrong_password') return 'That is not your current password.';
  if (e.code === 'invalid_password') return 'The new password must be 8 characters or more.';
  return e.message;
}

/** "Firefox on Linux" from a User-Agent (the full text stays in the tooltip). */
export function deviceName(agent) {
  if (!agent) return 'Unknown device';
  const browsers = [[/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/Firefox\//, 'Firefox'], [/Chrome\//, 'Chrome'],
    [/Safari\//, 'Safari'], [/^curl\//, 'curl']];
  const systems = [[/Android/, 'Android'], [/iPhone|iPad/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X/, 'macOS'],
    [/CrOS/, 'ChromeOS'], [/Linux/, 'Linux']];
  const browser = (browsers.find(([re]) => re.test(agent)) || [])[1];
  const system = (systems.find(([re]) => re.test(agent)) || [])[1];
  if (browser && system) return `${browser} on ${system}`;
  return browser || system || (agent.length > 40 ? `${agent.slice(0, 40)}…` : agent);
}

/** One signed-in device, with its sign-out button. */
function deviceRow(item, onSignedOut) {
  const error = h('p', { class: 'error', role: 'alert' });
  const signOut = h('button', {
    type: 'button',
    class: 'ghost danger sign-out',
    text: item.current ? 'Sign out' : 'Sign out this device',
    onclick: async () => {
      signOut.disabled = true;
      error.textContent = '';
      try {
        await api('DELETE', `/me/sessions/${encodeURIComponent(item.id)}`);
        if (item.current) return; // the shell hears the 401 that follows and goes to the login page
        toast('Signed out of that device.');
        await onSignedOut();
      } catch (e) {
        signOut.disabled = false;
        error.textContent = e.message;
      }
    },
  });
  return h('li', { class: 'device', dataset: { sessionId: item.id, current: String(item.current) } },
    h('div', { class: 'row' },
      h('strong', { class: 'device-agent', title: item.user_agent || null, text: deviceName(item.user_agent) }),
      item.current ? h('span', { class: 'badge', text: 'This device' }) : null),
    h('p', { class: 'muted small' },
      item.ip ? `From ${item.ip} · ` : '',
      'signed in ', timeAgo(item.created_at),
      ' · last used ', timeAgo(item.last_used_at),
      ' · expires ', new Date(item.expires_at).toLocaleDateString()),
    signOut,
    error);
}

function passwordForm(onChanged) {
  const error = h('p', { class: 'error', role: 'alert' });
  const current = h('input', { name: 'current_password', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const form = h('form', { id: 'password-form' },
    field('Current password', current),
    field('New password (8 characters or more)', next),
    error,
    h('button', { type: 'submit', text: 'Change password' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const done = await api('PUT', '/me/password', { current_password: current.value, new_password: next.value });
      form.reset();
      const n = done.revoked_sessions;
      toast(n === 0 ? 'Password changed.' : `Password changed; ${n} other ${n === 1 ? 'device was' : 'devices were'} signed out.`);
      await onChanged();
    } catch (err) {
      error.textContent = accountMessage(err);
    }
  });
  return form;
}

function deleteForm() {
  const error = h('p', { class: 'error', role: 'alert' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { id: 'delete-account-form' },
    h('p', { class: 'muted', text: 'Your posts stay, shown as from a deleted account; your username stays taken. Every device is signed out. This cannot be undone.' }),
    field('Password', password),
    error,
    h('button', { type: 'submit', class: 'danger', text: 'Delete my account' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      await api('DELETE', '/me', { password: password.value });
      session.clear();
      toast('Your account was deleted.');
      navigate('/login');
    } catch (err) {
      error.textContent = accountMessage(err);
    }
  });
  return form;
}

/** `/account`. */
export async function accountView(root) {
  const devices = h('ul', { class: 'devices', id: 'devices' });
  const refresh = async () => {
    const list = await get('/me/sessions');
    replace(devices, list.items.map((item) => deviceRow(item, refresh)));
  };
  replace(root,
    h('section', { class: 'panel' },
      h('h1', { id: 'account-title', text: 'Account' }),
      h('h2', { text: 'Signed-in devices' }),
      h('p', { class: 'muted small', text: 'Devices unused for a while are signed out on their own.' }),
      devices),
    h('section', { class: 'panel' }, h('h2', { text: 'Password' }), passwordForm(refresh)),
    h('section', { class: 'panel' }, h('h2', { text: 'Delete account' }), deleteForm()));
  await refresh();
}
