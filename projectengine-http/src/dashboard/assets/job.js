// One job: status, stage, progress, steps, the live log (replayed from the
// event log, then streamed over the WebSocket, resuming after the last seq
// seen on every reconnect), attempts, project, dependencies, parent and
// children, error, App, artifacts and webhook deliveries; cancel, retry,
// approve, reject (with a comment) and rerun where the status allows them.

import { api, ApiError, download, seg, socket } from './api.js';
import { badge, h, replace, when } from './dom.js';

const TERMINAL = ['succeeded', 'failed', 'cancelled'];

export function jobView(main, id) {
  let job = null;
  let lastSeq = 0; // the last event shown: the stream resumes after it
  let base = 0; // the seq of the snapshot the page was first drawn from
  let ws = null;
  let retryTimer = null;
  let webhookTimer = null;
  let stopped = false;

  const title = h('h1', {}, 'Job');
  const summary = h('dl', { class: 'summary' });
  const progress = h('progress', { id: 'progress', max: 100, value: 0, 'aria-labelledby': 'progress-label' });
  const progressText = h('span', { id: 'progress-text' }, '0 %');
  const actions = h('div', { class: 'actions' });
  const actionError = h('p', { class: 'error', role: 'alert' });
  const error = h('div', { id: 'job-error' });
  const steps = h('ol', { id: 'steps' });
  const log = h('ol', { id: 'log', class: 'log mono', 'aria-live': 'off' });
  const live = h('p', { id: 'live', class: 'help' });
  const attempts = h('div', { id: 'attempts' });
  const children = h('div', { id: 'children' });
  const app = h('pre', { id: 'app', class: 'mono' });
  const artifacts = h('div', { id: 'artifacts' });
  const webhooks = h('div', { id: 'webhooks' });

  const section = (heading, ...body) => h('section', {}, h('h2', {}, heading), body);

  function notFound() {
    replace(main, h('h1', {}, 'Job not found'),
      h('p', { id: 'not-found' }, 'There is no job with this id among yours. ',
        h('a', { href: '#/jobs' }, 'Back to your jobs.')));
  }

  function renderSummary() {
    replace(title, 'Job ', h('span', { class: 'mono' }, job.id));
    replace(summary,
      h('dt', {}, 'Status'), h('dd', { id: 'status' }, badge(job.status),
        job.cancel_requested && !TERMINAL.includes(job.status) ? ' (cancel requested)' : null),
      h('dt', {}, 'Stage'), h('dd', { id: 'stage' }, job.stage ?? '—'),
      h('dt', {}, 'Kind'), h('dd', {}, job.kind),
      h('dt', {}, 'Prompt'), h('dd', { id: 'prompt', class: 'prompt-full' }, job.prompt),
      h('dt', {}, 'Params'), h('dd', {}, h('code', {}, JSON.stringify(job.params))),
      job.parent_id ? [h('dt', {}, 'Parent'), h('dd', { id: 'parent' },
        h('a', { href: `#/jobs/${seg(job.parent_id)}`, class: 'mono' }, job.parent_id),
        ` (child “${job.child_key}”)`)] : null,
      job.project ? [h('dt', {}, 'Project'), h('dd', { id: 'project' }, job.project)] : null,
      (job.depends_on ?? []).length > 0 ? [h('dt', {}, 'Depends on'), h('dd', { id: 'depends-on' },
        h('ul', { class: 'plain' }, job.depends_on.map((d) => h('li', {},
          h('a', { href: `#/jobs/${seg(d)}`, class: 'mono' }, d)))))] : null,
      h('dt', {}, 'Submitted'), h('dd', {}, when(job.created_at)),
      h('dt', {}, 'Finished'), h('dd', {}, when(job.finished_at)));
    progress.value = job.progress;
    progressText.textContent = `${job.progress} %`;
    replace(error, job.error
      ? h('p', { class: 'error' }, h('strong', {}, job.error.code), ': ', job.error.message)
      : null);
    const buttons = [];
    if (job.status === 'awaiting_review') {
      const comment = h('textarea', { id: 'review-comment', rows: 2, 'aria-describedby': 'review-help' });
      buttons.push(
        h('button', { type: 'button', id: 'approve', onclick: () => act('approve') }, 'Approve'),
        h('label', { for: 'review-comment' }, 'Comment for the next attempt'), comment,
        h('button', {
          type: 'button', id: 'reject',
          onclick: () => act('reject', { comment: comment.value }),
        }, 'Reject'),
        h('p', { id: 'review-help', class: 'help' },
          'Rejecting runs the job again with your comment, or fails it when its attempts are spent.'));
    }
    if (['queued', 'running', 'awaiting_review'].includes(job.status) && !job.cancel_requested) {
      buttons.push(h('button', { type: 'button', id: 'cancel', onclick: () => act('cancel') }, 'Cancel'));
    }
    if (['failed', 'cancelled'].includes(job.status)) {
      buttons.push(h('button', { type: 'button', id: 'retry', onclick: () => act('retry') }, 'Retry'));
    }
    if (TERMINAL.includes(job.status)) {
      buttons.push(h('button', { type: 'button', id: 'rerun', onclick: rerun }, 'Run again'));
    }
    replace(actions, buttons);
  }

  async function act(what, body) {
    actionError.textContent = '';
    try {
      job = { ...job, ...(await api('POST', `/api/jobs/${seg(id)}/${what}/`, body)) };
      renderSummary();
      if (what === 'retry' || (what === 'reject' && job.status === 'queued')) connect();
    } catch (e) {
      actionError.textContent = e.message;
    }
  }

  // A new job with this one's spec: its page.
  async function rerun() {
    actionError.textContent = '';
    try {
      const created = await api('POST', `/api/jobs/${seg(id)}/rerun/`);
      location.hash = `#/jobs/${seg(created.id)}`;
    } catch (e) {
      actionError.textContent = e.message;
    }
  }

  function addStep(s) {
    const existing = steps.querySelector(`[data-name="${CSS.escape(s.name)}"][data-attempt="${s.attempt}"]`);
    const item = h('li', { 'data-name': s.name, 'data-attempt': s.attempt, 'data-seq': s.seq },
      s.name, ' ', h('span', { class: `step ${s.status}` }, s.status));
    if (existing) existing.replaceWith(item);
    else steps.append(item);
  }

  function addLog(ev) {
    log.append(h('li', { 'data-seq': ev.seq, class: ev.data.level },
      h('span', { class: 'seq' }, String(ev.seq)), ' ',
      h('span', { class: 'level' }, ev.data.level), ' ', ev.data.message));
    log.scrollTop = log.scrollHeight;
  }

  // Shows one event, once: the log always; the job's fields only for events
  // after the snapshot they were read with (`base`).
  function apply(ev, base) {
    if (ev.seq <= lastSeq) return;
    lastSeq = ev.seq;
    if (ev.type === 'log') addLog(ev);
    if (ev.seq <= base) return;
    const d = ev.data ?? {};
    switch (ev.type) {
      case 'status':
        job.status = d.status;
        if (d.error) job.error = d.error;
        if (TERMINAL.includes(d.status)) refreshAll();
        break;
      case 'stage': job.stage = d.stage; break;
      case 'progress': job.progress = d.progress; break;
      case 'step': addStep({ ...d, seq: ev.seq, attempt: ev.attempt }); break;
      case 'error': job.error = d; break;
      case 'cancel_requested': job.cancel_requested = true; break;
      case 'app': loadApp(); break;
      case 'artifact': loadArtifacts(); break;
      default: break;
    }
    renderSummary();
  }

  async function loadApp() {
    try {
      const a = await api('GET', `/api/apps/by-job/${seg(id)}/`);
      replace(app, JSON.stringify(a.payload, null, 2));
    } catch (e) {
      replace(app, e.status === 404 ? 'No App yet.' : `Could not load the App: ${e.message}`);
    }
  }

  async function loadArtifacts() {
    try {
      const list = await api('GET', `/api/jobs/${seg(id)}/artifacts/`);
      if (list.items.length === 0) {
        replace(artifacts, h('p', { class: 'help' }, 'No artifacts.'));
        return;
      }
      replace(artifacts, h('ul', {}, list.items.map((a) => h('li', {},
        h('button', {
          type: 'button', class: 'link', 'data-artifact': a.name,
          onclick: () => download(id, a.name).catch((e) => { actionError.textContent = e.message; }),
        }, `Download ${a.name}`),
        ` ${a.size} bytes, ${a.content_type}`))));
    } catch (e) {
      replace(artifacts, h('p', { class: 'error' }, `Could not load the artifacts: ${e.message}`));
    }
  }

  async function loadWebhooks() {
    clearTimeout(webhookTimer);
    try {
      const list = await api('GET', `/api/jobs/${seg(id)}/webhooks/`);
      // A pending delivery is tried again by a worker: look again soon.
      if (!stopped && list.items.some((d) => d.status === 'pending')) {
        webhookTimer = setTimeout(loadWebhooks, 2000);
      }
      if (list.items.length === 0) {
        replace(webhooks, h('p', { class: 'help' }, 'No webhook deliveries.'));
        return;
      }
      replace(webhooks, h('table', {},
        h('thead', {}, h('tr', {}, ['Destination', 'Event', 'Status', 'Tries', 'Last answer']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, list.items.map((d) => {
          const last = d.tries[d.tries.length - 1];
          return h('tr', {},
            h('td', {}, d.url ?? d.destination),
            h('td', {}, d.event),
            h('td', {}, badge(d.status)),
            h('td', {}, String(d.tries.length)),
            h('td', {}, last ? (last.status_code ?? last.error ?? '—') : '—'));
        }))));
    } catch (e) {
      replace(webhooks, h('p', { class: 'error' }, `Could not load the deliveries: ${e.message}`));
    }
  }

  async function loadAttempts() {
    const detail = await api('GET', `/api/jobs/${seg(id)}/`);
    replace(attempts, detail.attempts.length === 0
      ? h('p', { class: 'help' }, 'Not started yet.')
      : h('table', {},
        h('thead', {}, h('tr', {}, ['#', 'Status', 'Started', 'Finished', 'Error']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, detail.attempts.map((a) => h('tr', {},
          h('td', {}, String(a.number)), h('td', {}, badge(a.status)),
          h('td', {}, when(a.started_at)), h('td', {}, when(a.finished_at)),
          h('td', {}, a.error ? `${a.error.code}: ${a.error.message}` : '—'))))));
    replace(children, (detail.children ?? []).length === 0
      ? h('p', { class: 'help' }, 'No child jobs.')
      : h('table', {},
        h('thead', {}, h('tr', {}, ['Key', 'Job', 'Status']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, detail.children.map((c) => h('tr', {},
          h('td', {}, c.child_key),
          h('td', {}, h('a', { href: `#/jobs/${seg(c.id)}`, class: 'mono' }, c.id.slice(-12))),
          h('td', {}, badge(c.status)))))));
    return detail;
  }

  function refreshAll() {
    loadAttempts().then((d) => { job = { ...job, ...d }; renderSummary(); }).catch(() => {});
    loadApp();
    loadArtifacts();
    loadWebhooks();
  }

  // Reads the event log after `lastSeq`, page by page, then streams what
  // follows; after a failure or a drop it starts again from `lastSeq`.
  async function resume(delay = 500) {
    try {
      for (;;) {
        const page = await api('GET', `/api/jobs/${seg(id)}/events/?after=${lastSeq}&limit=500`);
        if (stopped) return;
        for (const ev of page.items) apply(ev, base);
        if (page.items.length === 0) break;
      }
    } catch (e) {
      if (stopped || e.status === 401 || e.status === 404) return;
      live.textContent = 'Reconnecting…';
      retryTimer = setTimeout(() => resume(Math.min(delay * 2, 5000)), delay);
      return;
    }
    if (TERMINAL.includes(job.status)) live.textContent = 'The job has ended.';
    else connect(delay);
  }

  // Streams events after `lastSeq`; after a drop, resumes there.
  function connect(delay = 500) {
    if (stopped || (ws && ws.readyState <= WebSocket.OPEN)) return;
    const s = socket(id, lastSeq);
    ws = s;
    s.onopen = () => { live.textContent = 'Live.'; delay = 500; };
    s.onmessage = (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      if (ev.seq > lastSeq + 1) {
        // A gap cannot be filled in place: resume after the last seq shown.
        s.close();
        return;
      }
      apply(ev, 0);
    };
    s.onclose = (c) => {
      if (ws === s) ws = null;
      if (stopped) return;
      if (c.code === 1000 || TERMINAL.includes(job.status)) {
        live.textContent = 'The job has ended.';
        return;
      }
      live.textContent = 'Reconnecting…';
      retryTimer = setTimeout(() => resume(Math.min(delay * 2, 5000)), delay);
    };
  }

  async function start() {
    let detail;
    try {
      detail = await loadAttempts();
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 400)) notFound();
      else replace(main, h('h1', {}, 'Job'), h('p', { class: 'error' }, e.message));
      return;
    }
    job = detail;
    base = detail.last_seq;
    main.append(title, summary,
      h('p', { class: 'bar' }, h('label', { id: 'progress-label', for: 'progress' }, 'Progress'), ' ',
        progress, ' ', progressText),
      actions, actionError, error,
      section('Steps', steps),
      section('Log', live, log),
      section('Attempts', attempts),
      section('Children', children),
      section('App', app),
      section('Artifacts', artifacts),
      section('Webhook deliveries', webhooks));
    renderSummary();
    for (const s of detail.steps) addStep(s);
    loadApp();
    loadArtifacts();
    loadWebhooks();
    // The log so far, then the stream from where it ends.
    resume();
  }

  start().catch((e) => { actionError.textContent = e.message; });
  return () => {
    stopped = true;
    clearTimeout(retryTimer);
    clearTimeout(webhookTimer);
    if (ws) ws.close();
  };
}
