// embtune dashboard: the DOM and API helpers every page shares. API strings only ever reach the
// page as text nodes or attribute values, never as HTML (the page's CSP forbids inline code too).

const API = "/api/v1";
const SVG_NS = "http://www.w3.org/2000/svg";

export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// The JSON body and X-Total-Count; a failure throws an Error with the API's detail and `status`
// (so a page can tell "this server has no such endpoint" from a real fault).
export async function api(path, options = {}) {
  const res = await fetch(API + path, { headers: { accept: "application/json" }, ...options });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = body && body.detail;
    const text = Array.isArray(detail)
      ? detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ")
      : detail || res.statusText;
    throw Object.assign(new Error(`${res.status} ${text}`), { status: res.status });
  }
  return { body, total: Number(res.headers.get("X-Total-Count") || 0) };
}

export const enc = encodeURIComponent;
export const taskLink = (id) => h("a", { href: `#/task/${enc(id)}`, class: "mono" }, id);
export const modelLink = (id, name) =>
  h("a", { href: `#/model/${enc(id)}`, class: name ? "" : "mono", title: id }, name || id);
export const badge = (status) => h("span", { class: `badge ${status}` }, status);
export const muted = (text) => h("p", { class: "muted" }, text);
export const emptyRow = (text, colspan = 6) =>
  h("tr", {}, h("td", { colspan, class: "muted" }, text));

export function when(iso) {
  const date = new Date(iso);
  return !iso ? "—" : Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

export function num(value, signed = false, fixed = false) {
  if (typeof value !== "number" || !Number.isFinite(value)) return value == null ? "—" : value;
  const text = fixed ? value.toFixed(4) : String(Number(value.toFixed(4)));
  return signed && value > 0 ? `+${text}` : text;
}

export function table(headings, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    rows instanceof Node && rows.tagName === "TBODY" ? rows : h("tbody", {}, rows));
}

export function keyValues(object) {
  return h("dl", { class: "facts" }, Object.entries(object).map(([key, value]) => [
    h("dt", {}, key),
    h("dd", {}, value instanceof Node ? value : typeof value === "object" && value !== null
      ? h("code", { class: "mono" }, JSON.stringify(value)) : num(value)),
  ]));
}

const models = new Map(); // id -> model (or null when unknown), for names in tables

export async function modelsById(ids) {
  if (ids.some((id) => !models.has(id))) {
    const { body } = await api("/embedding-models?limit=1000");
    for (const m of body) models.set(m.id, m);
    for (const id of ids) if (!models.has(id)) models.set(id, null);
  }
  return models;
}
