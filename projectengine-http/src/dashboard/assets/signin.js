// Sign in: a bearer token, checked against the API, kept in session storage.

import { api, token } from './api.js';
import { h } from './dom.js';

export function signinView(main) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'token-help token-error',
  });
  const error = h('p', { id: 'token-error', class: 'error', role: 'alert' });
  const form = h('form', { class: 'card narrow' },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'Bearer token'),
    input,
    h('p', { id: 'token-help', class: 'help' },
      'The server prints a development token when it starts; paste it here. ',
      'It is kept in this tab only and forgotten when you sign out.'),
    error,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    token.set(input.value.trim());
    try {
      await api('GET', '/api/kinds/');
      location.hash = '#/jobs';
    } catch (e) {
      token.clear();
      error.textContent = e.status === 401 ? 'This token was refused.' : e.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  });
  main.append(form);
  input.focus();
}
