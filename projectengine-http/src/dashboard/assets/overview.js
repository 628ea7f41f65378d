// Overview: the deployment's queue depths; how many of the caller's jobs wait
// and run, and their latest failures.

import { api, seg } from './api.js';
import { h, replace, when } from './dom.js';

const CAP = 100;

async function count(status) {
  const page = await api('GET', `/api/jobs/?status=${status}&limit=${CAP}`);
  return page.next_cursor ? `${CAP}+` : String(page.items.length);
}

export function overviewView(main) {
  const counts = h('dl', { id: 'counts', class: 'summary' });
  const queues = h('div', { id: 'queues' });
  const failures = h('div', { id: 'failures' });
  const error = h('p', { class: 'error', role: 'alert' });
  main.append(h('h1', {}, 'Overview'), error,
    h('section', {}, h('h2', {}, 'Your jobs'), counts),
    h('section', {}, h('h2', {}, 'Queues'), queues),
    h('section', {}, h('h2', {}, 'Your recent failures'), failures));

  async function load() {
    try {
      const [queued, running, failed, depths] = await Promise.all([
        count('queued'), count('running'),
        api('GET', '/api/jobs/?status=failed&order=desc&limit=10'),
        api('GET', '/api/queues/'),
      ]);
      replace(queues, h('table', {},
        h('thead', {}, h('tr', {}, ['Queue', 'Ready', 'Delayed', 'Taken']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, depths.items.map((q) => h('tr', { 'data-queue': q.name },
          h('td', {}, q.name), h('td', {}, String(q.ready)),
          h('td', {}, String(q.delayed)), h('td', {}, String(q.in_flight)))))));
      error.textContent = '';
      replace(counts, h('dt', {}, 'Waiting'), h('dd', { id: 'queued' }, queued),
        h('dt', {}, 'Running'), h('dd', { id: 'running' }, running));
      replace(failures, failed.items.length === 0
        ? h('p', { class: 'help' }, 'No failed jobs.')
        : h('ul', {}, failed.items.map((j) => h('li', {},
          h('a', { href: `#/jobs/${seg(j.id)}` }, j.id.slice(-12)), ' ', j.kind, ' — ',
          j.error ? `${j.error.code}: ${j.error.message}` : 'failed', ' (', when(j.finished_at), ')'))));
    } catch (e) {
      error.textContent = `Could not load the overview: ${e.message}`;
    }
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
