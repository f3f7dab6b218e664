// Sign up and log in. The session token lives in localStorage so a reload keeps it.

import { h, replace } from '../dom.js';
import { post, session } from '../api.js';
import { navigate } from '../nav.js';

function field(label, input) {
  return h('label', { class: 'field' }, h('span', { text: label }), input);
}

function nextPath(query) {
  const next = query.get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

/** Friendly text for the login errors people actually meet. */
function loginMessage(e) {
  if (e.code === 'invalid_credentials') return 'Wrong username or password.';
  if (e.code === 'account_suspended') return 'This account is suspended. Contact an administrator.';
  return e.message;
}

async function logIn(username, password) {
  const s = await post('/sessions', { username, password });
  session.save(s.token, s.user);
}

/** `/login`. */
export function loginView(root, { query }) {
  const error = h('p', { class: 'error', role: 'alert', id: 'auth-error' });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'panel narrow', id: 'login-form' },
    h('h1', { text: 'Log in' }),
    field('Username', username),
    field('Password', password),
    error,
    h('button', { type: 'submit', text: 'Log in' }),
    h('p', { class: 'muted' }, 'New here? ', h('a', { href: '/signup', text: 'Create an account' })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      await logIn(username.value.trim(), password.value);
      navigate(nextPath(query));
    } catch (err) {
      error.textContent = loginMessage(err);
    }
  });
  replace(root, form);
}

/** `/signup`. */
export function signupView(root) {
  const error = h('p', { class: 'error', role: 'alert', id: 'auth-error' });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true, pattern: '[a-z0-9_\\-]{1,63}', title: 'lowercase letters, digits, - or _' });
  const display = h('input', { name: 'display_name', autocomplete: 'name', maxlength: 100 });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const form = h('form', { class: 'panel narrow', id: 'signup-form' },
    h('h1', { text: 'Create an account' }),
    field('Username', username),
    h('p', { class: 'muted small', text: 'Lowercase letters, digits, - or _.' }),
    field('Display name (optional)', display),
    field('Password (8 characters or more)', password),
    error,
    h('button', { type: 'submit', text: 'Sign up' }),
    h('p', { class: 'muted' }, 'Already have an account? ', h('a', { href: '/login', text: 'Log in' })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      await post('/users', { username: username.value.trim(), password: password.value, display_name: display.value.trim() || undefined });
      await logIn(username.value.trim(), password.value);
      navigate('/');
    } catch (err) {
      error.textContent = err.status === 409 ? 'That username is taken. Pick another one.' : err.message;
    }
  });
  replace(root, form);
}
