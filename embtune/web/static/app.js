// embtune dashboard: three hash-routed pages over the JSON API; no framework, no build step.
// API strings only ever reach the page as text nodes or attribute values, never as HTML.
"use strict";

const API = "/api/v1";
const STATUSES = ["pending", "processing", "done", "canceled", "failed", "refused"];
// Statuses a task still leaves on its own: its page keeps polling. Which buttons are enabled
// comes from the task itself (`can_cancel`, `can_restart`: the server's table of transitions).
const ACTIVE = new Set(["pending", "processing"]);
const PAGE_SIZE = 20;
const SVG_NS = "http://www.w3.org/2000/svg";

let timer = null; // the current page's refresh timer
let route = 0; // bumped on navigation so a late response never paints over another page

function h(tag, attrs, ...children) {
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

async function api(path, options = {}) {
  const res = await fetch(API + path, { headers: { accept: "application/json" }, ...options });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = body && body.detail;
    const text = Array.isArray(detail)
      ? detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ")
      : detail || res.statusText;
    throw new Error(`${res.status} ${text}`);
  }
  return { body, total: Number(res.headers.get("X-Total-Count") || 0) };
}

const enc = encodeURIComponent;
const taskLink = (id) => h("a", { href: `#/task/${enc(id)}`, class: "mono" }, id);
const badge = (status) => h("span", { class: `badge ${status}` }, status);
const muted = (text) => h("p", { class: "muted" }, text);
const emptyRow = (text) => h("tr", {}, h("td", { colspan: 6, class: "muted" }, text));

function when(iso) {
  const date = new Date(iso);
  return !iso ? "—" : Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function num(value, signed = false, fixed = false) {
  if (typeof value !== "number" || !Number.isFinite(value)) return value == null ? "—" : value;
  const text = fixed ? value.toFixed(4) : String(Number(value.toFixed(4)));
  return signed && value > 0 ? `+${text}` : text;
}

function progressBar(task) {
  const fraction = Math.max(0, Math.min(1, Number(task.progress.fraction) || 0));
  const pct = Math.round(fraction * 100);
  const fill = h("span", { class: `fill ${task.status}` });
  fill.style.width = `${fraction * 100}%`; // CSSOM, which the style-src policy permits
  return h("span", {
    class: "bar", role: "progressbar", title: `${pct}%`,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct,
  }, fill);
}

function table(headings, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    rows instanceof Node && rows.tagName === "TBODY" ? rows : h("tbody", {}, rows));
}

function keyValues(object) {
  return h("dl", { class: "facts" }, Object.entries(object).map(([key, value]) => [
    h("dt", {}, key),
    h("dd", {}, value instanceof Node ? value : typeof value === "object" && value !== null
      ? h("code", { class: "mono" }, JSON.stringify(value)) : num(value)),
  ]));
}

function go(page, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  location.hash = `#/${page}${query ? `?${query}` : ""}`;
}

// Runs `load` now and again every `ms` while it returns true; the returned function reloads
// at once (after an action). Errors show in `errorEl` and the polling carries on.
function poll(load, ms, errorEl) {
  const mine = route;
  let [busy, again] = [false, false];
  async function tick() {
    if (mine !== route) return;
    if (busy) { again = true; return; }
    clearTimeout(timer);
    busy = true;
    let keepGoing = true;
    try {
      keepGoing = await load();
      errorEl.replaceChildren();
    } catch (err) {
      errorEl.textContent = `Could not load: ${err.message}`;
    }
    busy = false;
    if (mine !== route) return;
    if (again) {
      again = false;
      tick();
    } else if (keepGoing !== false) timer = setTimeout(tick, ms);
  }
  tick();
  return tick;
}

function pager(page, params, offset) {
  const count = h("span", { class: "count", id: "count" }, "…");
  const prev = h("button", { id: "prev", disabled: offset === 0,
    onclick: () => go(page, { ...params, offset: Math.max(0, offset - PAGE_SIZE) }) }, "‹ Prev");
  const next = h("button", { id: "next", disabled: true,
    onclick: () => go(page, { ...params, offset: offset + PAGE_SIZE }) }, "Next ›");
  return {
    el: h("div", { class: "pager" }, prev, count, next),
    update(shown, total) {
      count.textContent = shown ? `${offset + 1}–${offset + shown} of ${total}` : `0 of ${total}`;
      prev.disabled = offset === 0;
      next.disabled = offset + shown >= total;
    },
  };
}

const models = new Map(); // id -> model (or null when unknown), for names in the task table

async function modelsById(ids) {
  if (ids.some((id) => !models.has(id))) {
    const { body } = await api("/embedding-models?limit=1000");
    for (const m of body) models.set(m.id, m);
    for (const id of ids) if (!models.has(id)) models.set(id, null);
  }
  return models;
}

// ---- pages --------------------------------------------------------------------------------

function tasksPage(main, params) {
  const status = params.get("status") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const onchange = (e) => go("tasks", { status: e.target.value });
  const filter = h("select", { id: "status-filter", onchange },
    h("option", { value: "" }, "all statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("tasks", { status }, offset);
  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, "Fine-tuning tasks"),
      h("label", { class: "filter" }, "Status ", filter), pages.el),
    error,
    h("table", { class: "list", id: "tasks" },
      h("thead", {}, h("tr", {}, ["Task", "Status", "Model", "Progress", "Created", "Updated"]
        .map((text) => h("th", {}, text)))),
      rows));
  poll(async () => {
    const query = new URLSearchParams({ offset, limit: PAGE_SIZE });
    if (status) query.set("status", status);
    const { body: tasks, total } = await api(`/fine-tuning/task?${query}`);
    const known = await modelsById(tasks.map((t) => t.embedding_model_id));
    rows.replaceChildren(...tasks.map((t) => h("tr", { "data-id": t.id },
      h("td", {}, taskLink(t.id)),
      h("td", {}, badge(t.status)),
      h("td", { title: t.embedding_model_id },
        known.get(t.embedding_model_id)?.name ?? t.embedding_model_id),
      h("td", {}, progressBar(t)),
      h("td", {}, when(t.created_at)),
      h("td", {}, when(t.updated_at)))));
    if (!tasks.length) rows.append(emptyRow("No tasks."));
    pages.update(tasks.length, total);
    return true;
  }, 2000, error);
}

function taskPage(main, id) {
  const section = (title, ...body) => h("section", {}, h("h2", {}, title), body);
  const error = h("p", { class: "error", role: "alert" });
  const actionError = h("p", { class: "error", id: "action-error", role: "alert" });
  const parts = Object.fromEntries(["status", "progress", "detail", "facts", "loss", "metrics",
    "lineage", "events"].map((name) => [name, h("div", { id: name })]));
  const button = (kind, label) =>
    h("button", { id: kind, disabled: true, onclick: () => act(kind) }, label);
  const [cancel, restart] = [button("cancel", "Cancel"), button("restart", "Restart")];
  const tuneAgain = h("button", { id: "tune-again", hidden: true, disabled: true,
    title: "A new task: the same source model, batch and parameters", onclick: () => again() },
  "Tune again");
  let current = null; // the task as last loaded
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/tasks" }, "← All tasks")),
    h("div", { class: "heading" }, h("h1", {}, "Task ", h("span", { class: "mono" }, id)),
      parts.status, h("span", { class: "actions" }, cancel, restart, tuneAgain)),
    actionError, error,
    section("Progress", parts.progress, parts.detail),
    h("div", { class: "columns" }, section("Loss", parts.loss), section("Task", parts.facts)),
    section("Metrics", parts.metrics),
    section("Model lineage", parts.lineage),
    section("Events", parts.events));

  async function act(kind) {
    if (kind === "restart" && !window.confirm(
      `Restart task ${id} from scratch? Its progress, detail and metrics are cleared.`)) return;
    actionError.replaceChildren();
    cancel.disabled = restart.disabled = true;
    try {
      await api(`/fine-tuning/task/${enc(id)}/${kind}`, { method: "PUT" });
    } catch (err) {
      actionError.textContent = `${kind[0].toUpperCase()}${kind.slice(1)} failed: ${err.message}`;
    }
    reload();
  }

  // A new task on the same source model, batch and parameters; then its page.
  async function again() {
    if (!current) return;
    actionError.replaceChildren();
    tuneAgain.disabled = true;
    try {
      const { body } = await api("/fine-tuning/task", {
        method: "POST",
        headers: { accept: "application/json", "content-type": "application/json" },
        body: JSON.stringify({ embedding_model_id: current.embedding_model_id,
          batch_id: current.batch_id, params: current.params }),
      });
      go(`task/${enc(body.id)}`);
    } catch (err) {
      actionError.textContent = `Tune again failed: ${err.message}`;
      tuneAgain.disabled = false;
    }
  }

  let lineageOf = null;
  const reload = poll(async () => {
    const [{ body: task }, { body: events }] = await Promise.all([
      api(`/fine-tuning/task/${enc(id)}`), api(`/fine-tuning/task/${enc(id)}/events`)]);
    const p = task.progress;
    parts.status.replaceChildren(badge(task.status));
    cancel.disabled = !task.can_cancel;
    current = task;
    restart.disabled = !task.can_restart;
    restart.title = task.status === "done"
      ? "A done task keeps its result: use Tune again for a new task" : "";
    tuneAgain.hidden = task.status !== "done";
    tuneAgain.disabled = task.status !== "done";
    const steps = p.total_steps ? `step ${p.step} / ${p.total_steps}` : null;
    const eta = task.status === "processing" && p.eta_s != null ? `ETA ${duration(p.eta_s)}` : null;
    const epoch = p.epoch != null ? `epoch ${num(p.epoch)}` : null;
    const loss = p.loss != null ? `loss ${num(p.loss)}` : null;
    const text = [steps, epoch, loss, p.message, eta].filter(Boolean).join(" · ");
    parts.progress.replaceChildren(progressBar(task),
      h("p", { id: "progress-text" },
        text || (task.status === "pending" ? "waiting for a worker" : "")));
    parts.detail.replaceChildren(task.detail
      ? h("pre", { class: ["failed", "refused"].includes(task.status) ? "detail bad" : "detail" },
        task.detail)
      : "");
    const known = await modelsById([task.embedding_model_id, task.result_model_id].filter(Boolean));
    const modelName = (mid) => (mid ? `${known.get(mid)?.name ?? "?"} · ${mid}` : "—");
    parts.facts.replaceChildren(keyValues({
      model: modelName(task.embedding_model_id), "result model": modelName(task.result_model_id),
      attempts: task.attempts, created: when(task.created_at), started: when(task.started_at),
      finished: when(task.finished_at), updated: when(task.updated_at),
      "idempotency key": task.idempotency_key || "—", batch: task.batch_id || "—",
      params: task.params, metadata: task.metadata,
    }));
    parts.loss.replaceChildren(lossChart(p.loss_history));
    parts.metrics.replaceChildren(...metricsView(task.metrics));
    parts.events.replaceChildren(eventsView(events));
    const key = `${task.result_model_id}|${task.embedding_model_id}`;
    if (key !== lineageOf) {
      lineageOf = key;
      parts.lineage.replaceChildren(
        h("h3", {}, "Result model"),
        task.result_model_id
          ? await lineageView(task.result_model_id) : muted("No result model yet."),
        h("h3", {}, "Source model"), await lineageView(task.embedding_model_id));
    }
    return ACTIVE.has(task.status);
  }, 1000, error);
}

function modelsPage(main, params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("models", {}, offset);
  main.replaceChildren(h("div", { class: "heading" }, h("h1", {}, "Embedding models"), pages.el),
    error, table(["Name", "Id", "Plugin", "Parent", "Produced by", "Created"], rows,
      { class: "list", id: "models" }));
  poll(async () => {
    const { body, total } = await api(`/embedding-models?offset=${offset}&limit=${PAGE_SIZE}`);
    const names = new Map(body.map((m) => [m.id, m.name]));
    rows.replaceChildren(...body.map((m) => h("tr", { "data-id": m.id },
      h("td", {}, h("strong", {}, m.name)),
      h("td", { class: "mono" }, m.id),
      h("td", {}, m.plugin_name),
      h("td", { class: names.has(m.parent_id) ? "" : "mono" },
        m.parent_id ? names.get(m.parent_id) ?? m.parent_id : "—"),
      h("td", {}, m.task_id ? taskLink(m.task_id) : "—"),
      h("td", {}, when(m.created_at)))));
    if (!body.length) rows.append(emptyRow("No models."));
    pages.update(body.length, total);
    return false;
  }, 0, error);
}

// ---- task page parts ----------------------------------------------------------------------

function lossChart(history) {
  const points = (Array.isArray(history) ? history : []).filter((p) => Array.isArray(p)
    && Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (!points.length) return muted("No loss reported.");
  const [W, H, L, R, T, B] = [560, 200, 56, 12, 12, 28];
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [xs.reduce((a, b) => Math.min(a, b)), xs.reduce((a, b) => Math.max(a, b))];
  const [y0, y1] = [ys.reduce((a, b) => Math.min(a, b)), ys.reduce((a, b) => Math.max(a, b))];
  const sx = (x) => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (y1 === y0 ? 0.5 : (y1 - y) / (y1 - y0)) * (H - T - B);
  const line = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
  const last = points[points.length - 1];
  return h("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `training loss over ${points.length} points` },
    h("svg:line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    h("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    h("svg:text", { x: L - 6, y: T + 4, "text-anchor": "end" }, num(y1)),
    h("svg:text", { x: L - 6, y: H - B, "text-anchor": "end" }, num(y0)),
    h("svg:text", { x: L, y: H - 8 }, `step ${x0}`),
    h("svg:text", { x: W - R, y: H - 8, "text-anchor": "end" }, `step ${x1}`),
    h("svg:polyline", { points: line, class: "loss" }),
    h("svg:circle", { cx: sx(last[0]), cy: sy(last[1]), r: 3, class: "loss-dot" },
      h("svg:title", {}, `step ${last[0]}: loss ${num(last[1])}`)));
}

function metricsView(metrics) {
  if (!metrics) return [muted("No metrics yet.")];
  const out = [];
  const { before = {}, after = {}, delta = {}, per_query: perQuery } = metrics;
  if (metrics.before || metrics.after) {
    const names = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    out.push(table(["Metric", "Before", "After", "Δ"], names.map((name) => {
      const numbers = typeof after[name] === "number" && typeof before[name] === "number";
      const change = delta[name] ?? (numbers ? after[name] - before[name] : null);
      const tone = change > 0 ? "good" : change < 0 ? "bad" : "";
      return h("tr", { "data-metric": name }, h("th", {}, name),
        h("td", {}, num(before[name], false, true)), h("td", {}, num(after[name], false, true)),
        h("td", { class: tone }, num(change, true, true)));
    }), { class: "metrics", id: "metrics-table" }));
  }
  if (perQuery) {
    const worst = perQuery.worst_regressions || [];
    out.push(h("div", { id: "per-query" }, h("h3", {}, "Per query"),
      h("p", {}, h("span", { class: "good" }, `${perQuery.better ?? 0} better`), " · ",
        h("span", { class: "bad" }, `${perQuery.worse ?? 0} worse`), " · ",
        `${perQuery.same ?? 0} same`),
      worst.length ? table(["Worst regressions", "Rank before", "Rank after"], worst.map((r) =>
        h("tr", {}, h("td", {}, r.query), h("td", {}, r.rank_before ?? "not found"),
          h("td", {}, r.rank_after ?? "not found")))) : null));
  }
  for (const name of ["data", "training"]) {
    if (metrics[name] && typeof metrics[name] === "object") {
      out.push(h("h3", {}, name[0].toUpperCase() + name.slice(1)), keyValues(metrics[name]));
    }
  }
  out.push(h("details", { open: !out.length }, h("summary", {}, "Raw metrics JSON"),
    h("pre", { id: "metrics-json" }, JSON.stringify(metrics, null, 2))));
  return out;
}

async function lineageView(modelId) {
  try {
    const { body } = await api(`/embedding-models/${enc(modelId)}/lineage`);
    return h("ol", { class: "lineage" }, body.map((m) => h("li", {},
      h("strong", {}, m.name), " ", h("span", { class: "mono muted" }, m.id),
      ` · ${m.plugin_name} · `,
      m.task_id ? ["tuned by ", taskLink(m.task_id)] : "base model")));
  } catch (err) {
    return h("p", { class: "error" }, `Lineage of ${modelId}: ${err.message}`);
  }
}

function eventsView(events) {
  if (!events.length) return muted("No events.");
  const newest = events.slice(-300).reverse();
  return h("div", { class: "scroll" }, table(["Time", "Kind", "Transition", "Message"],
    newest.map((e) => h("tr", {}, h("td", {}, when(e.created_at)), h("td", {}, e.kind),
      h("td", {}, e.to_status ? `${e.from_status ?? "—"} → ${e.to_status}` : ""),
      h("td", {}, e.message))), { class: "events" }));
}

// ---- routing ------------------------------------------------------------------------------

function navigate() {
  clearTimeout(timer);
  route += 1;
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map((part) => {
    try { return decodeURIComponent(part); } catch { return part; }
  });
  const params = new URLSearchParams(query || "");
  const page = parts[0] === "task" && parts[1] ? "task"
    : parts[0] === "models" ? "models" : "tasks";
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === (page === "task" ? "tasks" : page));
  }
  const main = document.getElementById("app");
  if (page === "task") taskPage(main, parts[1]);
  else if (page === "models") modelsPage(main, params);
  else tasksPage(main, params);
}

window.addEventListener("hashchange", navigate);
window.addEventListener("DOMContentLoaded", navigate);
