// embtune dashboard: reindex tasks, which write a model's catalogue vectors into a vector sink
// (Qdrant or Parquet) and switch the sink's alias to them, and a search of what they wrote.
// `#/reindex` lists them, `#/reindex/<id>` is one task; `searchBox` also serves the aliases page.
// Loaded on first use (app.js's router, the aliases page's search box), so no other page
// depends on it. A task's sink is shown from its metrics (which name the default sink) or else
// from its params.
import {
  api, badge, duration, emptyRow, enc, h, keyValues, modelLink, modelsById, muted, num, table,
  when,
} from "./dom.js";
import { sinkText } from "./aliases.js";
import { go, PAGE_SIZE, pager, poll } from "./nav.js";

const STATUSES = ["pending", "processing", "done", "canceled", "failed", "refused"];
const ACTIVE = new Set(["pending", "processing"]); // its page keeps polling
const COLUMNS = ["Task", "Status", "Model", "Sink", "Mode", "Progress",
  "Encoded / reused / copied", "Created"];
// Timings the run reports, in the order they happen; any others follow in the API's order.
const TIMINGS = [["encode", "encode s"], ["write", "write s"], ["switch", "switch s"],
  ["total_before_switch", "total before switch s"]];
const JSON_HEADERS = { accept: "application/json", "content-type": "application/json" };

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const reindexLink = (id) => h("a", { href: `#/reindex/${enc(id)}`, class: "mono" }, id);

const mode = (task) => task.metrics?.mode ?? (task.incremental ? "incremental" : "full");

function progressBar(task) {
  const fraction = Math.max(0, Math.min(1, Number(task.progress?.fraction) || 0));
  const pct = Math.round(fraction * 100);
  const fill = h("span", { class: `fill ${task.status}` });
  fill.style.width = `${fraction * 100}%`; // CSSOM, which the style-src policy permits
  return h("span", { class: "bar", role: "progressbar", title: `${pct}%`,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct }, fill);
}

// `40 / 120 items · encode · 35.2 items/s · ETA 3s`; the rate and ETA only while it runs.
function progressLine(task, long = false) {
  const p = task.progress || {};
  const running = task.status === "processing";
  const parts = [
    p.total_steps ? `${p.step} / ${p.total_steps}${long ? " items" : ""}` : null,
    long ? p.message : null,
    long && running && typeof p.items_per_s === "number" ? `${num(p.items_per_s)} items/s` : null,
    running && typeof p.eta_s === "number" ? `ETA ${duration(p.eta_s)}` : null,
  ];
  const text = parts.filter(Boolean).join(" · ");
  return text || (task.status === "pending" ? "waiting for a worker" : "");
}

function counts(metrics) {
  if (!isObject(metrics) || metrics.encoded === undefined) return "—";
  return [metrics.encoded, metrics.reused, metrics.copied].map((n) => num(n ?? 0)).join(" / ");
}

// ---- the list ------------------------------------------------------------------------------

function listPage(main, params) {
  const status = params.get("status") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const filter = h("select", { id: "status-filter",
    onchange: (e) => go("reindex", { status: e.target.value }) },
  h("option", { value: "" }, "all statuses"),
  STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("reindex", { status }, offset);
  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, "Reindex tasks"),
      h("label", { class: "filter" }, "Status ", filter), pages.el),
    muted("Each writes a model's catalogue vectors into a vector sink, then switches the "
      + "sink's alias to them."),
    error, table(COLUMNS, rows, { class: "list", id: "reindex-tasks" }));
  poll(async () => {
    const query = new URLSearchParams({ offset, limit: PAGE_SIZE });
    if (status) query.set("status", status);
    const { body, total } = await api(`/reindex/task?${query}`);
    const tasks = Array.isArray(body) ? body : [];
    const known = await modelsById(tasks.map((t) => t.embedding_model_id));
    rows.replaceChildren(...tasks.map((t) => h("tr", { "data-id": t.id },
      h("td", {}, reindexLink(t.id)),
      h("td", {}, badge(t.status)),
      h("td", { title: t.embedding_model_id },
        known.get(t.embedding_model_id)?.name ?? t.embedding_model_id),
      h("td", { class: "sink" }, sinkText(t.metrics?.sink ?? t.sink)),
      h("td", { class: "mode" }, mode(t)),
      h("td", { class: "progress" }, progressBar(t),
        h("span", { class: "progress-note muted" }, progressLine(t))),
      h("td", { class: "counts" }, counts(t.metrics)),
      h("td", {}, when(t.created_at)))));
    if (!tasks.length) rows.append(emptyRow("No reindex tasks.", COLUMNS.length));
    pages.update(tasks.length, total);
    return true;
  }, 2000, error);
}

// ---- one task ------------------------------------------------------------------------------

// The run's figures as one table: what it wrote, from where, and how long each phase took.
function metricsTable(task) {
  const m = task.metrics;
  if (!isObject(m) || !Object.keys(m).length) {
    return muted(ACTIVE.has(task.status) ? "Figures come when the run is done." : "No metrics.");
  }
  const timings = isObject(m.timings_s) ? m.timings_s : {};
  // the worker's last rate report: written rows over the whole run, model loading included
  const rate = typeof task.progress?.items_per_s === "number" ? task.progress.items_per_s
    : m.written && timings.total_before_switch ? m.written / timings.total_before_switch : null;
  const encodeRate = m.encoded && timings.encode ? m.encoded / timings.encode : null;
  const named = new Set(TIMINGS.map(([key]) => key));
  const rows = [
    ["mode", m.mode], ["items", m.items], ["encoded", m.encoded], ["reused", m.reused],
    ["copied", m.copied], ["deleted", m.deleted], ["written", m.written], ["dimensions", m.dim],
    ["cache", m.cache], ["precision", m.precision],
    ["collection", m.collection], ["previous live", m.previous_live ?? "—"],
    ["previous collection", m.previous_collection],
    ["sink", isObject(m.sink) ? sinkText(m.sink) : m.sink],
    ["sink key", m.sink?.key],
    ...TIMINGS.map(([key, label]) => [label, timings[key]]),
    ...Object.entries(timings).filter(([key]) => !named.has(key)).map(([k, v]) => [`${k} s`, v]),
    ["items/s (whole run)", rate === null ? undefined : Math.round(rate * 10) / 10],
    ["items/s (encode)", encodeRate === null ? undefined : Math.round(encodeRate * 10) / 10],
  ].filter(([, value]) => value !== undefined && value !== null);
  return [
    table(["Figure", "Value"], rows.map(([name, value]) => h("tr", { "data-metric": name },
      h("th", {}, name),
      h("td", { class: typeof value === "number" ? null : "text" },
        isObject(value) ? JSON.stringify(value) : num(value)))),
    { class: "metrics", id: "reindex-metrics" }),
    m.note ? h("p", { class: "muted note" }, m.note) : "",
  ];
}

function eventsView(events) {
  if (!events.length) return muted("No events.");
  return h("div", { class: "scroll" }, table(["Time", "Kind", "Transition", "Message"],
    events.slice(-300).reverse().map((e) => h("tr", { "data-kind": e.kind,
      class: e.kind === "switch" ? "outcome" : null },
    h("td", {}, when(e.created_at)),
    h("td", {}, h("span", { class: `kind kind-${e.kind}` }, e.kind)),
    h("td", {}, e.to_status ? `${e.from_status ?? "—"} → ${e.to_status}` : ""),
    h("td", {}, e.message))), { class: "events" }));
}

function taskPage(main, id) {
  const section = (title, ...body) => h("section", {}, h("h2", {}, title), body);
  const error = h("p", { class: "error", role: "alert" });
  const actionError = h("p", { class: "error", id: "action-error", role: "alert" });
  const parts = Object.fromEntries(["status", "progress", "detail", "facts", "metrics",
    "events"].map((name) => [name, h("div", { id: name })]));
  const button = (kind, label) =>
    h("button", { id: kind, disabled: true, onclick: () => act(kind) }, label);
  const [cancel, restart] = [button("cancel", "Cancel"), button("restart", "Restart")];
  const search = h("section", { id: "search-section", hidden: true });
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/reindex" }, "← All reindex tasks")),
    h("div", { class: "heading" },
      h("h1", {}, "Reindex task ", h("span", { class: "mono" }, id)), parts.status,
      h("span", { class: "actions" }, cancel, restart)),
    actionError, error,
    section("Progress", parts.progress, parts.detail),
    h("div", { class: "columns" }, section("Metrics", parts.metrics), section("Task", parts.facts)),
    search,
    section("Events", parts.events));

  async function act(kind) {
    if (kind === "restart" && !window.confirm(
      `Restart reindex task ${id}? It writes a new collection from scratch.`)) return;
    actionError.replaceChildren();
    cancel.disabled = restart.disabled = true;
    try {
      await api(`/reindex/task/${enc(id)}/${kind}`, { method: "PUT" });
    } catch (err) {
      actionError.textContent = `${kind[0].toUpperCase()}${kind.slice(1)} failed: ${err.message}`;
    }
    reload();
  }

  let searchFor = null; // the model the search box was built for
  const reload = poll(async () => {
    const [{ body: task }, { body: events }] = await Promise.all([
      api(`/reindex/task/${enc(id)}`), api(`/reindex/task/${enc(id)}/events`)]);
    parts.status.replaceChildren(badge(task.status));
    cancel.disabled = !task.can_cancel;
    restart.disabled = !task.can_restart;
    restart.title = task.status === "done"
      ? "A done task's sink serves what it wrote: create a new reindex task instead" : "";
    parts.progress.replaceChildren(progressBar(task),
      h("p", { id: "progress-text" }, progressLine(task, true)));
    parts.detail.replaceChildren(task.detail
      ? h("pre", { class: ["failed", "refused"].includes(task.status) ? "detail bad" : "detail" },
        task.detail)
      : "");
    const known = await modelsById([task.embedding_model_id]);
    parts.facts.replaceChildren(keyValues({
      model: h("span", {}, modelLink(task.embedding_model_id,
        known.get(task.embedding_model_id)?.name),
      h("span", { class: "mono muted" }, ` ${task.embedding_model_id}`)),
      sink: sinkText(task.metrics?.sink ?? task.sink),
      mode: task.incremental ? "incremental (copies unchanged items)" : "full",
      alias: task.alias ? h("a", { href: "#/aliases" }, task.alias) : "—",
      attempts: task.attempts, created: when(task.created_at), started: when(task.started_at),
      finished: when(task.finished_at), updated: when(task.updated_at),
      "idempotency key": task.idempotency_key || "—", metadata: task.metadata,
    }));
    parts.metrics.replaceChildren(...[metricsTable(task)].flat());
    parts.events.replaceChildren(eventsView(Array.isArray(events) ? events : []));
    if (task.status === "done" && searchFor !== task.embedding_model_id) {
      searchFor = task.embedding_model_id;
      search.replaceChildren(h("h2", {}, "Search the live index"),
        searchBox({ model_id: task.embedding_model_id, alias: task.alias }));
      search.hidden = false;
    }
    return ACTIVE.has(task.status);
  }, 1000, error);
}

// ---- search ----------------------------------------------------------------------------------

// A query box over POST /search: by model (its newest complete collection) or by alias (its
// sink's live collection). `target` holds `model_id` and/or `alias`; with both, a select picks.
export function searchBox(target) {
  const choices = [
    target.model_id ? ["model_id", target.model_id, "this model"] : null,
    target.alias ? ["alias", target.alias, `alias ${target.alias}`] : null,
  ].filter(Boolean);
  const query = h("input", { type: "search", class: "search-query", name: "query",
    placeholder: "a query, e.g. blue silk tie", required: true, maxlength: 2000,
    "aria-label": "Query" });
  const k = h("input", { type: "number", class: "search-k", name: "k", min: 1, max: 100,
    value: 10, "aria-label": "Hits" });
  const via = choices.length > 1
    ? h("select", { class: "search-via", "aria-label": "Search" },
      choices.map(([key, , label]) => h("option", { value: key }, label)))
    : null;
  const submit = h("button", { type: "submit" }, "Search");
  const result = h("div", { class: "search-result", "aria-live": "polite" });
  async function run(event) {
    event.preventDefault();
    const text = query.value.trim();
    if (!text) return;
    const [key, value] = via ? choices.find(([name]) => name === via.value) : choices[0];
    submit.disabled = true;
    result.replaceChildren(muted("Searching…"));
    try {
      const { body } = await api("/search", { method: "POST", headers: JSON_HEADERS,
        body: JSON.stringify({ [key]: value, query: text, k: Number(k.value) || 10 }) });
      result.replaceChildren(...hitsView(body));
    } catch (err) {
      result.replaceChildren(h("p", { class: "error search-error" },
        `Search failed: ${err.message}`));
    }
    submit.disabled = false;
  }
  return h("div", { class: "search-box" },
    h("form", { class: "search-form", onsubmit: run, role: "search" },
      query, h("label", { class: "muted" }, "k ", k), via, submit),
    result);
}

function hitsView(body) {
  const hits = Array.isArray(body?.hits) ? body.hits : [];
  const served = h("p", { class: "search-served muted" }, "Served by model ",
    modelLink(body.model_id), " · collection ", h("span", { class: "mono" }, body.collection),
    " · sink ", sinkText(body.sink),
    body.alias && !body.live
      ? h("span", { class: "bad" }, ` · not live: alias ${body.alias} now points at `,
        modelLink(body.alias_model_id))
      : null);
  if (!hits.length) return [served, muted("No hits.")];
  return [served, table(["Rank", "Object id", "Score"], hits.map((hit, i) =>
    h("tr", { "data-object-id": hit.object_id },
      h("td", {}, i + 1), h("td", { class: "mono" }, hit.object_id),
      h("td", {}, num(hit.score, false, true)))), { class: "metrics search-hits" })];
}

// `#/reindex` (the list) or `#/reindex/<id>` (one task).
export function reindexPage(main, params, id) {
  if (id) taskPage(main, id);
  else listPage(main, params);
}
