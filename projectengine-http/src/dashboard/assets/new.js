// Submit a job: kind (from the registered kinds), prompt, params (a JSON
// object, checked before sending); the server's errors shown by their field.

import { api, seg } from './api.js';
import { h } from './dom.js';

function field(id, label, control, help) {
  const error = h('p', { id: `${id}-error`, class: 'error', role: 'alert' });
  control.setAttribute('id', id);
  control.setAttribute('aria-describedby', `${id}-error${help ? ` ${id}-help` : ''}`);
  return {
    control,
    error,
    node: h('div', { class: 'field' },
      h('label', { for: id }, label), control,
      help ? h('p', { id: `${id}-help`, class: 'help' }, help) : null, error),
    show(message) {
      error.textContent = message ?? '';
      if (message) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

export function newJobView(main) {
  const kind = field('kind', 'Kind', h('select', { name: 'kind' }));
  const prompt = field('prompt', 'Prompt', h('textarea', { name: 'prompt', rows: 4, required: true }));
  const params = field('params', 'Params (JSON object, optional)',
    h('textarea', { name: 'params', rows: 4, spellcheck: 'false', class: 'mono' }),
    'For the stub kind, e.g. {"steps": 5, "delay_ms": 500, "progress": true}');
  const general = h('p', { class: 'error', role: 'alert' });
  const submit = h('button', { type: 'submit' }, 'Submit');
  const fields = { kind, prompt, params };
  const form = h('form', { class: 'card', novalidate: true },
    h('h1', {}, 'New job'), kind.node, prompt.node, params.node, general, submit);
  main.append(form);

  api('GET', '/api/kinds/').then((k) => {
    for (const item of k.items) {
      kind.control.append(h('option', { value: item.name, selected: item.default }, item.name));
    }
  }).catch((e) => kind.show(`Could not load the kinds: ${e.message}`));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of Object.values(fields)) f.show(null);
    general.textContent = '';
    const body = { kind: kind.control.value, prompt: prompt.control.value };
    if (!body.prompt.trim()) {
      prompt.show('Say what the job should do.');
      prompt.control.focus();
      return;
    }
    const text = params.control.value.trim();
    if (text) {
      let value;
      try {
        value = JSON.parse(text);
      } catch (e) {
        params.show(`Not valid JSON: ${e.message}`);
        params.control.focus();
        return;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        params.show('Must be a JSON object, like {"steps": 3}.');
        params.control.focus();
        return;
      }
      body.params = value;
    }
    submit.disabled = true;
    try {
      const job = await api('POST', '/api/jobs/', body);
      location.hash = `#/jobs/${seg(job.id)}`;
    } catch (e) {
      const f = fields[e.field];
      if (f) {
        f.show(e.message);
        f.control.focus();
      } else {
        general.textContent = e.message;
      }
    } finally {
      submit.disabled = false;
    }
  });
  prompt.control.focus();
}
