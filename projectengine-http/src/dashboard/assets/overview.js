// Overview: the deployment's queue depths; how many of the caller's jobs are
// queued, waiting for dependencies, running and awaiting review; their
// projects, schedules and latest failures.

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
  const projects = h('div', { id: 'projects' });
  const schedules = h('div', { id: 'schedules' });
  const error = h('p', { class: 'error', role: 'alert' });
  main.append(h('h1', {}, 'Overview'), error,
    h('section', {}, h('h2', {}, 'Your jobs'), counts),
    h('section', {}, h('h2', {}, 'Queues'), queues),
    h('section', {}, h('h2', {}, 'Your projects'), projects),
    h('section', {}, h('h2', {}, 'Your schedules'), schedules),
    h('section', {}, h('h2', {}, 'Your recent failures'), failures));

  async function load() {
    try {
      const [queued, waiting, running, review, failed, depths, owned, scheduled] = await Promise.all([
        count('queued'), count('waiting'), count('running'), count('awaiting_review'),
        api('GET', '/api/jobs/?status=failed&order=desc&limit=10'),
        api('GET', '/api/queues/'),
        api('GET', '/api/projects/'),
        api('GET', '/api/schedules/?upcoming=1'),
      ]);
      replace(projects, owned.items.length === 0
        ? h('p', { class: 'help' }, 'No projects yet: submit a job with a project to group it.')
        : h('table', {},
          h('thead', {}, h('tr', {}, ['Project', 'Jobs', 'By status']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, owned.items.map((p) => h('tr', { 'data-project': p.name },
            h('td', {}, p.name), h('td', {}, String(p.total)),
            h('td', {}, Object.entries(p.counts).map(([s, n]) => `${s} ${n}`).join(', ')))))));
      replace(schedules, scheduled.items.length === 0
        ? h('p', { class: 'help' }, 'No schedules. Create one with POST /api/schedules/.')
        : h('table', {},
          h('thead', {}, h('tr', {}, ['Schedule', 'Cron', 'Next run', 'Enabled']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, scheduled.items.map((s) => h('tr', { 'data-schedule': s.id },
            h('td', {}, s.name || s.id.slice(-12)), h('td', { class: 'mono' }, s.cron),
            h('td', {}, when(s.next_fire_at)), h('td', {}, s.enabled ? 'yes' : 'paused'))))));
      replace(queues, h('table', {},
        h('thead', {}, h('tr', {}, ['Queue', 'Ready', 'Delayed', 'Taken']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, depths.items.map((q) => h('tr', { 'data-queue': q.name },
          h('td', {}, q.name), h('td', {}, String(q.ready)),
          h('td', {}, String(q.delayed)), h('td', {}, String(q.in_flight)))))));
      error.textContent = '';
      replace(counts, h('dt', {}, 'Queued'), h('dd', { id: 'queued' }, queued),
        h('dt', {}, 'Waiting for dependencies'), h('dd', { id: 'waiting' }, waiting),
        h('dt', {}, 'Running'), h('dd', { id: 'running' }, running),
        h('dt', {}, 'Awaiting review'), h('dd', { id: 'awaiting-review' }, review));
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
