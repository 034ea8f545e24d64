// embtune dashboard: import tasks, which read a sessions or items file (NDJSON or Parquet, a
// local path or an s3:// / gs:// URL) on the server and store its rows in chunks. `#/imports`
// lists them with live progress, `#/imports/<id>` is one task: its figures, events, cancel and
// restart (which resumes after the last committed chunk), and the rejected-rows report.
// Loaded on first use by app.js's router, so no other page depends on it.
import {
  api, badge, duration, emptyRow, enc, h, keyValues, muted, num, table, when,
} from "./dom.js";
import { go, PAGE_SIZE, pager, poll } from "./nav.js";

const STATUSES = ["pending", "processing", "done", "canceled", "failed", "refused"];
const ACTIVE = new Set(["pending", "processing"]); // its page keeps polling
const COLUMNS = ["Task", "Status", "Kind", "Source", "Progress",
  "New / repeated / conflict / rejected rows", "Created"];
const OUTCOMES = ["accepted", "duplicate", "conflict", "rejected"];
// The finished run's figures, in the order a reader wants them.
const FIGURES = [["rows", "rows"], ["bytes", "bytes"], ["chunks", "chunks"],
  ["accepted", "new (accepted)"], ["duplicate", "repeated (duplicate)"], ["conflict", "conflict"],
  ["rejected", "rejected"], ["seconds", "seconds"], ["rows_per_s", "rows/s"],
  ["resumed_from_row", "resumed from row"], ["peak_rss_mb", "peak RSS MB"]];

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const importLink = (id) => h("a", { href: `#/imports/${enc(id)}`, class: "mono" }, id);
const count = (value) => (typeof value === "number" ? value.toLocaleString("en-US") : "—");
// A long source keeps its end (the file's name) in the list; the whole of it is the title.
const shortSource = (url) => (url && url.length > 48 ? `…${url.slice(-47)}` : url ?? "—");

// `1.2 MB`: decimal units, like the CLI.
function bytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let [value, unit] = [n, 0];
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${n} B`;
}

function progressBar(task) {
  const fraction = Math.max(0, Math.min(1, Number(task.progress?.fraction) || 0));
  const pct = Math.round(fraction * 100);
  const fill = h("span", { class: `fill ${task.status}` });
  fill.style.width = `${fraction * 100}%`; // CSSOM, which the style-src policy permits
  return h("span", { class: "bar", role: "progressbar", title: `${pct}%`,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct }, fill);
}

// `12,000 rows · 1.2 MB of 9.8 MB · 25,000 rows/s · ETA 3s`; the rate and ETA while it runs.
export function progressLine(task) {
  const p = task.progress || {};
  const running = task.status === "processing";
  const read = typeof p.bytes === "number" ? p.bytes : p.step;
  const total = typeof p.total_bytes === "number" ? p.total_bytes : p.total_steps;
  const parts = [
    typeof p.rows === "number" ? `${count(p.rows)} rows` : null,
    read || total ? (total ? `${bytes(read)} of ${bytes(total)}` : bytes(read)) : null,
    running && typeof p.rows_per_s === "number" ? `${count(Math.round(p.rows_per_s))} rows/s`
      : null,
    running && typeof p.eta_s === "number" ? `ETA ${duration(p.eta_s)}` : null,
  ];
  const text = parts.filter(Boolean).join(" · ");
  return text || (task.status === "pending" ? "waiting for a worker" : p.message || "");
}

// accepted / duplicate / conflict / rejected: the finished run's metrics, else its progress.
function outcomes(task) {
  const source = isObject(task.metrics) && task.metrics.rows !== undefined
    ? task.metrics : task.progress || {};
  return OUTCOMES.map((name) => (typeof source[name] === "number" ? source[name] : 0));
}

const notStored = (task) => { const [, , c, r] = outcomes(task); return c + r; };

// ---- the list ------------------------------------------------------------------------------

function listPage(main, params) {
  const status = params.get("status") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const filter = h("select", { id: "status-filter",
    onchange: (e) => go("imports", { status: e.target.value }) },
  h("option", { value: "" }, "all statuses"),
  STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("imports", { status }, offset);
  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, "Import tasks"),
      h("label", { class: "filter" }, "Status ", filter), pages.el),
    muted("Each reads a file of sessions or items on the server (embtune clickstream import "
      + "--server-side, embtune items import --server-side) and stores its rows in chunks."),
    error, table(COLUMNS, rows, { class: "list", id: "import-tasks" }));
  poll(async () => {
    const query = new URLSearchParams({ offset, limit: PAGE_SIZE });
    if (status) query.set("status", status);
    const { body, total } = await api(`/imports?${query}`);
    const tasks = Array.isArray(body) ? body : [];
    rows.replaceChildren(...tasks.map((t) => h("tr", { "data-id": t.id },
      h("td", {}, importLink(t.id)),
      h("td", {}, badge(t.status)),
      h("td", { class: "kind" }, t.data_kind ?? "—"),
      h("td", { class: "source mono", title: t.url }, shortSource(t.url)),
      h("td", { class: "progress" }, progressBar(t),
        h("span", { class: "progress-note muted" }, progressLine(t))),
      h("td", { class: "counts" }, outcomes(t).map(count).join(" / ")),
      h("td", {}, when(t.created_at)))));
    if (!tasks.length) rows.append(emptyRow("No import tasks.", COLUMNS.length));
    pages.update(tasks.length, total);
    return true;
  }, 2000, error);
}

// ---- one task ------------------------------------------------------------------------------

function metricsTable(task) {
  const m = task.metrics;
  if (!isObject(m) || !Object.keys(m).length) {
    return muted(ACTIVE.has(task.status) ? "Figures come when the run is done." : "No metrics.");
  }
  const rows = FIGURES.filter(([key]) => m[key] !== undefined && m[key] !== null)
    .map(([key, label]) => [label, key === "bytes" ? `${bytes(m.bytes)} (${count(m.bytes)})`
      : typeof m[key] === "number" && !Number.isInteger(m[key]) ? num(Number(m[key].toPrecision(3)))
        : count(m[key])]);
  return table(["Figure", "Value"], rows.map(([name, value]) => h("tr", { "data-metric": name },
    h("th", {}, name), h("td", {}, value))), { class: "metrics", id: "import-metrics" });
}

function eventsView(events) {
  if (!events.length) return muted("No events.");
  return h("div", { class: "scroll" }, table(["Time", "Kind", "Transition", "Message"],
    events.slice(-300).reverse().map((e) => h("tr", { "data-kind": e.kind },
      h("td", {}, when(e.created_at)),
      h("td", {}, h("span", { class: `kind kind-${e.kind}` }, e.kind)),
      h("td", {}, e.to_status ? `${e.from_status ?? "—"} → ${e.to_status}` : ""),
      h("td", {}, e.message))), { class: "events" }));
}

function rejectionsView(task) {
  const n = notStored(task);
  if (!n) return muted(ACTIVE.has(task.status) ? "None so far." : "Every row was stored.");
  return h("p", {}, `${count(n)} ${n === 1 ? "row was" : "rows were"} not stored. `,
    h("a", { id: "rejections-link", href: `/api/v1/imports/${enc(task.id)}/rejections`,
      download: `embtune-rejections-${task.id}.ndjson` }, "Download the rejected-rows report"),
    " (NDJSON: row, field, reason, excerpt).");
}

function taskPage(main, id) {
  const section = (title, ...body) => h("section", {}, h("h2", {}, title), body);
  const error = h("p", { class: "error", role: "alert" });
  const actionError = h("p", { class: "error", id: "action-error", role: "alert" });
  const parts = Object.fromEntries(["status", "progress", "detail", "facts", "metrics",
    "rejections", "events"].map((name) => [name, h("div", { id: name })]));
  const button = (kind, label) =>
    h("button", { id: kind, disabled: true, onclick: () => act(kind) }, label);
  const [cancel, restart] = [button("cancel", "Cancel"), button("restart", "Restart")];
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/imports" }, "← All import tasks")),
    h("div", { class: "heading" },
      h("h1", {}, "Import task ", h("span", { class: "mono" }, id)), parts.status,
      h("span", { class: "actions" }, cancel, restart)),
    actionError, error,
    section("Progress", parts.progress, parts.detail),
    h("div", { class: "columns" }, section("Figures", parts.metrics), section("Task", parts.facts)),
    section("Rejected rows", parts.rejections),
    section("Events", parts.events));

  async function act(kind) {
    if (kind === "restart" && !window.confirm(
      `Restart import task ${id}? It resumes after its last committed chunk.`)) return;
    actionError.replaceChildren();
    cancel.disabled = restart.disabled = true;
    try {
      await api(`/imports/${enc(id)}/${kind}`, { method: "PUT" });
    } catch (err) {
      actionError.textContent = `${kind[0].toUpperCase()}${kind.slice(1)} failed: ${err.message}`;
    }
    reload();
  }

  const reload = poll(async () => {
    const [{ body: task }, { body: events }] = await Promise.all([
      api(`/imports/${enc(id)}`), api(`/imports/${enc(id)}/events`)]);
    parts.status.replaceChildren(badge(task.status));
    cancel.disabled = !task.can_cancel;
    restart.disabled = !task.can_restart;
    restart.title = task.status === "done"
      ? "A done import is final: create a new import task to read the file again" : "";
    parts.progress.replaceChildren(progressBar(task),
      h("p", { id: "progress-text" }, progressLine(task)),
      h("p", { id: "progress-counts", class: "muted" },
        outcomes(task).map((n, i) => `${count(n)} ${["new", "repeated", "in conflict",
          "rejected"][i]}`).join(" · ")));
    parts.detail.replaceChildren(task.detail
      ? h("pre", { class: ["failed", "refused"].includes(task.status) ? "detail bad" : "detail" },
        task.detail)
      : "");
    parts.facts.replaceChildren(keyValues({
      kind: task.data_kind, source: h("span", { class: "mono" }, task.url ?? "—"),
      format: task.format, attempts: task.attempts, created: when(task.created_at),
      started: when(task.started_at), finished: when(task.finished_at),
      updated: when(task.updated_at), "idempotency key": task.idempotency_key || "—",
      metadata: task.metadata,
    }));
    parts.metrics.replaceChildren(metricsTable(task));
    parts.rejections.replaceChildren(rejectionsView(task));
    parts.events.replaceChildren(eventsView(Array.isArray(events) ? events : []));
    return ACTIVE.has(task.status);
  }, 1000, error);
}

// `#/imports` (the list) or `#/imports/<id>` (one task).
export function importsPage(main, params, id) {
  if (id) taskPage(main, id);
  else listPage(main, params);
}
