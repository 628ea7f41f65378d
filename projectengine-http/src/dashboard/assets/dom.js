// Building the page: every text goes in as a text node, never as HTML.

// An element: `attrs` are attributes (`on…` functions become listeners,
// `false`/`null` values are left out); `children` are nodes or texts.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

// Appends nodes and texts (nested arrays allowed; null and undefined skipped).
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces an element's content.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A date as local time, or a dash.
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

// A status badge.
export function badge(status) {
  return h('span', { class: `badge ${status}`, 'data-status': status }, status);
}
