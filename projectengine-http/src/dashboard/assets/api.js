// The public API, with the bearer token kept in this tab's session storage.

const KEY = 'projectengine.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// An error answered by the API: `{error: {code, message, field}}`.
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

// Called when the API refuses the token (set by the app).
export const hooks = { unauthorized: () => {} };

async function send(method, path, body) {
  const headers = { Authorization: `Bearer ${token.get() ?? ''}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `the server did not answer (${e.message})`);
  }
  if (!res.ok) {
    let detail = {};
    try {
      detail = (await res.json()).error ?? {};
    } catch {
      // Not our JSON shape: the status says enough.
    }
    const err = new ApiError(res.status, detail.code ?? `http_${res.status}`,
      detail.message ?? res.statusText, detail.field);
    if (res.status === 401) hooks.unauthorized(err);
    throw err;
  }
  return res;
}

// A JSON call; answers the parsed body.
export async function api(method, path, body) {
  const res = await send(method, path, body);
  return res.status === 204 ? null : res.json();
}

// A path segment, escaped.
export const seg = encodeURIComponent;

// Downloads an artifact with the token (a plain link cannot carry it).
export async function download(jobId, name) {
  const path = `/api/jobs/${seg(jobId)}/artifacts/${name.split('/').map(seg).join('/')}`;
  const blob = await (await send('GET', path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name.split('/').pop();
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Opens a job's event stream after `after`; the token travels as a
// subprotocol, never in the URL.
export function socket(jobId, after) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}/ws/jobs/${seg(jobId)}/?after=${after}`;
  return new WebSocket(url, ['bearer', token.get() ?? '']);
}
