// embtune dashboard: hash-routed pages over the JSON API; no framework, no build step. ES modules
// from this origin (the CSP allows no other): dom.js (elements, API calls), nav.js (routing
// state, polling, pager), report.js (a task's report), aliases.js (the aliases page), reindex.js
// (reindex tasks and search) and imports.js (import tasks), each loaded on its first visit.
import { aliasesPage } from "./aliases.js";
import {
  api, badge, duration, emptyRow, enc, h, keyValues, modelLink, modelsById, muted, num, table,
  taskLink, when,
} from "./dom.js";
import { go, lazyPage, leavePage, PAGE_SIZE, pager, poll } from "./nav.js";
import { metricsView, trialsView } from "./report.js";

const STATUSES = ["pending", "processing", "done", "canceled", "failed", "refused"];
// Statuses a task still leaves on its own: its page keeps polling. Which buttons are enabled
// comes from the task itself (`can_cancel`, `can_restart`: the server's table of transitions).
const ACTIVE = new Set(["pending", "processing"]);
// Event kinds that record what a finished run earned; they stand out in the history.
const OUTCOMES = new Set(["verdict", "promotion"]);

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
    "lineage", "events", "trials"].map((name) => [name, h("div", { id: name })]));
  const trialsSection = h("section", { hidden: true }, h("h2", {}, "Search trials"), parts.trials);
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
    trialsSection,
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
    trialsSection.hidden = !task.params?.search;
    if (task.params?.search) { // a hyperparameter search: its trials table
      const { body: trials } = await api(`/fine-tuning/task/${enc(id)}/trials`);
      parts.trials.replaceChildren(...trialsView(trials, task.metrics?.search));
    }
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
      h("td", {}, modelLink(m.id)),
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

// One model: what it is, where it came from, the report of the run that made it.
function modelPage(main, id) {
  const error = h("p", { class: "error", role: "alert" });
  const [facts, metrics, lineage] = ["model-facts", "model-metrics", "model-lineage"]
    .map((name) => h("div", { id: name }));
  const title = h("span", {}, "Model ", h("span", { class: "mono" }, id));
  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "← All models")),
    h("div", { class: "heading" }, h("h1", {}, title)), error,
    h("section", {}, h("h2", {}, "Model"), facts),
    h("section", {}, h("h2", {}, "Metrics"), metrics),
    h("section", {}, h("h2", {}, "Lineage"), lineage));
  poll(async () => {
    const { body: m } = await api(`/embedding-models/${enc(id)}`);
    title.replaceChildren(m.name, " ", h("span", { class: "mono muted" }, m.id));
    facts.replaceChildren(keyValues({
      plugin: m.plugin_name, source: m.source,
      parent: m.parent_id ? modelLink(m.parent_id) : "—",
      "produced by": m.task_id ? taskLink(m.task_id) : "—", created: when(m.created_at),
    }));
    metrics.replaceChildren(...(m.metrics ? metricsView(m.metrics) : [muted("No metrics.")]));
    lineage.replaceChildren(await lineageView(m.id));
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

async function lineageView(modelId) {
  try {
    const { body } = await api(`/embedding-models/${enc(modelId)}/lineage`);
    return h("ol", { class: "lineage" }, body.map((m) => h("li", {},
      h("strong", {}, modelLink(m.id, m.name)), " ", h("span", { class: "mono muted" }, m.id),
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
    newest.map((e) => h("tr", { class: OUTCOMES.has(e.kind) && "outcome", "data-kind": e.kind },
      h("td", {}, when(e.created_at)),
      h("td", {}, h("span", { class: `kind kind-${e.kind}` }, e.kind)),
      h("td", {}, e.to_status ? `${e.from_status ?? "—"} → ${e.to_status}` : ""),
      h("td", {}, e.message))), { class: "events" }));
}

// ---- routing ------------------------------------------------------------------------------

function navigate() {
  leavePage();
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map((part) => {
    try { return decodeURIComponent(part); } catch { return part; }
  });
  const params = new URLSearchParams(query || "");
  const page = ["task", "model"].includes(parts[0]) && parts[1] ? parts[0]
    : ["models", "aliases", "reindex", "imports"].includes(parts[0]) ? parts[0] : "tasks";
  const tab = { task: "tasks", model: "models" }[page] ?? page;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === tab);
  }
  const main = document.getElementById("app");
  if (page === "task") taskPage(main, parts[1]);
  else if (page === "model") modelPage(main, parts[1]);
  else if (page === "models") modelsPage(main, params);
  else if (page === "aliases") aliasesPage(main, params);
  else if (page === "reindex") {
    lazyPage(main, () => import("./reindex.js"), (m) => m.reindexPage(main, params, parts[1]));
  } else if (page === "imports") {
    lazyPage(main, () => import("./imports.js"), (m) => m.importsPage(main, params, parts[1]));
  } else tasksPage(main, params);
}

window.addEventListener("hashchange", navigate);
window.addEventListener("DOMContentLoaded", navigate);
