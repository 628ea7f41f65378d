// Overview: how many of the caller's jobs wait and run, and the latest failures.

import { api, seg } from './api.js';
import { h, replace, when } from './dom.js';

const CAP = 100;

async function count(status) {
  const page = await api('GET', `/api/jobs/?status=${status}&limit=${CAP}`);
  return page.next_cursor ? `${CAP}+` : String(page.items.length);
}

export function overviewView(main) {
  const counts = h('dl', { id: 'counts', class: 'summary' });
  const failures = h('div', { id: 'failures' });
  const error = h('p', { class: 'error', role: 'alert' });
  main.append(h('h1', {}, 'Overview'), error, counts,
    h('section', {}, h('h2', {}, 'Recent failures'), failures));

  async function load() {
    try {
      const [queued, running, failed] = await Promise.all([
        count('queued'), count('running'),
        api('GET', '/api/jobs/?status=failed&order=desc&limit=10'),
      ]);
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
