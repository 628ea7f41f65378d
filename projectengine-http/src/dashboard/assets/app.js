// The dashboard's router: `#/signin`, `#/jobs`, `#/new`, `#/jobs/<id>`,
// `#/overview`. Each view renders into <main> and answers a function that
// stops what it started (timers, sockets).

import { hooks, token } from './api.js';
import { h, replace } from './dom.js';
import { signinView } from './signin.js';
import { jobsView } from './jobs.js';
import { newJobView } from './new.js';
import { jobView } from './job.js';
import { overviewView } from './overview.js';

const main = document.getElementById('main');
const signout = document.getElementById('signout');
let stop = () => {};

function route() {
  stop();
  stop = () => {};
  const path = location.hash.replace(/^#/, '') || '/jobs';
  signout.hidden = !token.get();
  if (!token.get() && path !== '/signin') {
    location.hash = '#/signin';
    return;
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${path}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const job = path.match(/^\/jobs\/([^/?]+)$/);
  let view;
  if (path === '/signin') view = signinView;
  else if (path === '/jobs') view = jobsView;
  else if (path === '/new') view = newJobView;
  else if (path === '/overview') view = overviewView;
  else if (job) view = (el) => jobView(el, decodeURIComponent(job[1]));
  else {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/jobs' }, 'Go to the jobs.')));
    return;
  }
  replace(main);
  stop = view(main) ?? (() => {});
}

signout.addEventListener('click', () => {
  token.clear();
  location.hash = '#/signin';
});

hooks.unauthorized = () => {
  token.clear();
  if (location.hash !== '#/signin') location.hash = '#/signin';
};

window.addEventListener('hashchange', route);
route();
