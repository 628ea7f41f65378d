// The caller's jobs, newest first: filter by status, kind and project (by
// the API, so every page holds only matching jobs), cursor pages, statuses
// refreshed every two seconds.

import { api, seg } from './api.js';
import { badge, h, replace, when } from './dom.js';

const STATUSES = ['queued', 'waiting', 'running', 'awaiting_review', 'succeeded', 'failed', 'cancelled'];
const PAGE = 20;

export function jobsView(main) {
  const state = { status: '', kind: '', project: '', cursors: [null], page: 0, next: null };
  const status = h('select', { id: 'filter-status' },
    h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s }, s)));
  const kind = h('select', { id: 'filter-kind' }, h('option', { value: '' }, 'any'));
  const project = h('select', { id: 'filter-project' }, h('option', { value: '' }, 'any'));
  const body = h('div', { id: 'jobs' });
  const prev = h('button', { type: 'button', id: 'prev', disabled: true }, 'Newer');
  const next = h('button', { type: 'button', id: 'next', disabled: true }, 'Older');
  const error = h('p', { class: 'error', role: 'alert' });
  main.append(
    h('h1', {}, 'Jobs'),
    h('form', { class: 'filters', role: 'search' },
      h('label', { for: 'filter-status' }, 'Status'), status,
      h('label', { for: 'filter-kind' }, 'Kind'), kind,
      h('label', { for: 'filter-project' }, 'Project'), project),
    error, body,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, next));

  api('GET', '/api/kinds/').then((k) => {
    for (const item of k.items) kind.append(h('option', { value: item.name }, item.name));
  }).catch(() => {});
  api('GET', '/api/projects/').then((p) => {
    for (const item of p.items) project.append(h('option', { value: item.name }, item.name));
  }).catch(() => {});

  async function load() {
    const q = new URLSearchParams({ order: 'desc', limit: String(PAGE) });
    if (state.status) q.set('status', state.status);
    if (state.kind) q.set('kind', state.kind);
    if (state.project) q.set('project', state.project);
    const cursor = state.cursors[state.page];
    if (cursor) q.set('cursor', cursor);
    try {
      const page = await api('GET', `/api/jobs/?${q}`);
      error.textContent = '';
      state.next = page.next_cursor ?? null;
      render(page.items);
    } catch (e) {
      error.textContent = `Could not load the jobs: ${e.message}`;
    }
  }

  function render(jobs) {
    prev.disabled = state.page === 0;
    next.disabled = !state.next;
    if (jobs.length === 0) {
      const filtered = state.status || state.kind || state.project;
      replace(body, h('div', { class: 'empty' },
        h('p', {}, filtered ? 'No job matches these filters.' : 'No jobs yet.'),
        h('p', {}, h('a', { href: '#/new' }, 'Submit a job'), ' and watch it run here.')));
      return;
    }
    replace(body, h('table', {},
      h('caption', { class: 'sr-only' }, 'Your jobs, newest first'),
      h('thead', {}, h('tr', {},
        ['Job', 'Kind', 'Project', 'Prompt', 'Status', 'Progress', 'Submitted'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, jobs.map((j) => h('tr', { 'data-job': j.id },
        h('td', {}, h('a', { href: `#/jobs/${seg(j.id)}` }, j.id.slice(-12))),
        h('td', {}, j.kind),
        h('td', {}, j.project ?? '—'),
        h('td', { class: 'prompt' }, j.prompt),
        h('td', {}, badge(j.status)),
        h('td', {}, `${j.progress} %`),
        h('td', {}, when(j.created_at)))))));
  }

  status.addEventListener('change', () => {
    state.status = status.value;
    state.cursors = [null];
    state.page = 0;
    load();
  });
  const refilter = () => {
    state.kind = kind.value;
    state.project = project.value;
    state.cursors = [null];
    state.page = 0;
    load();
  };
  kind.addEventListener('change', refilter);
  project.addEventListener('change', refilter);
  next.addEventListener('click', () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    load();
  });
  prev.addEventListener('click', () => {
    if (state.page > 0) state.page -= 1;
    load();
  });

  load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}
