// embtune dashboard: the aliases page. An alias (e.g. `production`) names the live iteration of
// a model; each row opens its history of changes (set, promote, rollback), newest first, and,
// when the alias has a vector sink, what the sink serves and a search of it.
// A server without the aliases API answers 404: the page says so instead of failing.
import {
  api, emptyRow, enc, h, modelLink, modelsById, muted, table, taskLink, when,
} from "./dom.js";
import { PAGE_SIZE, pager, poll } from "./nav.js";

const COLUMNS = ["Alias", "Model", "Version", "Updated by", "Updated"];
const SERVING_WORDS = { live: "live", reindexing: "reindexing", failed: "failed",
  no_sink: "no sink" };

// `parquet · catalogue`: a sink config's type and name (the reindex pages show sinks so too).
export function sinkText(sink) {
  if (!sink || typeof sink !== "object") return "—";
  return [sink.type ?? "?", sink.name].filter(Boolean).join(" · ");
}

const reindexHref = (id) => `#/reindex/${enc(id)}`;

// The model's name as a link to its page, with its id beside it.
function modelCell(id, known) {
  if (!id) return "—";
  const name = known.get(id)?.name;
  return [modelLink(id, name), name ? h("span", { class: "mono muted" }, ` ${id}`) : null];
}

// `task:<id>` (a task promoted it) links to that task; other actors are shown as they are.
const actorCell = (actor) => (typeof actor === "string" && actor.startsWith("task:")
  ? ["task ", taskLink(actor.slice(5))] : actor);

function historyTable(history, known) {
  if (!history.length) return muted("No changes recorded.");
  const model = (id) => modelCell(id, known);
  return table(["When", "Version", "Action", "Model", "Previous model", "Actor", "Reason"],
    history.map((c) => h("tr", { "data-version": c.version },
      h("td", {}, when(c.created_at)), h("td", {}, c.version),
      h("td", {}, h("span", { class: `action ${c.action}` }, c.action)),
      h("td", {}, model(c.model_id)), h("td", {}, model(c.previous_model_id)),
      h("td", {}, actorCell(c.actor)), h("td", {}, c.reason))), { class: "history" });
}

// What the alias's sink serves, as a badge beside its name: a reindexing or failed one links to
// the reindex task, and the server's own words are its title. Older servers send no `serving`.
function servingBadge(serving) {
  if (!serving || typeof serving !== "object") return null;
  const state = Object.hasOwn(SERVING_WORDS, serving.state) ? serving.state : "unknown";
  const label = h("span", { class: `badge serving ${state}`, title: serving.detail || null },
    SERVING_WORDS[state] ?? String(serving.state));
  const task = serving.reindex_task_id;
  return task && (state === "reindexing" || state === "failed")
    ? h("a", { href: reindexHref(task), class: "serving-link" }, label) : label;
}

// The sink and its live collection, above the history: `Sink parquet · catalogue · live
// collection c1 of mini · newest reindex task t1`; a failure's detail in full.
function sinkLine(alias, known) {
  const serving = alias.serving;
  if (!alias.sink && !serving) return null;
  const live = serving?.collection
    ? [" · live collection ", h("span", { class: "mono" }, serving.collection),
      serving.model_id ? [" of ", modelCell(serving.model_id, known)] : null]
    : null;
  const task = serving?.reindex_task_id
    ? [" · newest reindex task ", h("a", { href: reindexHref(serving.reindex_task_id),
      class: "mono" }, serving.reindex_task_id)] : null;
  return h("div", { class: "alias-sink", "data-alias": alias.name },
    h("span", { class: "muted" }, "Sink "),
    h("span", { class: "sink" }, alias.sink ? sinkText(alias.sink) : "none"), live, task,
    serving?.state === "reindexing" || serving?.state === "failed"
      ? h("div", { class: `serving-detail ${serving.state === "failed" ? "bad" : "muted"}` },
        serving.detail) : null);
}

// The list's own `history` when it carries one; else fetched from /aliases/{name} when opened.
function historyDetails(alias, known) {
  const body = h("div", {});
  const listed = Array.isArray(alias.history) ? alias.history : null;
  const summary = listed ? `History (${listed.length} change${listed.length === 1 ? "" : "s"})`
    : "History";
  if (listed) body.append(historyTable(listed, known));
  let loaded = Boolean(listed);
  async function load(event) {
    if (loaded || !event.target.open) return;
    loaded = true;
    body.replaceChildren(muted("Loading…"));
    try {
      const { body: one } = await api(`/aliases/${enc(alias.name)}`);
      const history = Array.isArray(one?.history) ? one.history : [];
      const names = await modelsById(history.flatMap((c) => [c.model_id, c.previous_model_id])
        .filter(Boolean));
      body.replaceChildren(historyTable(history, names));
    } catch (err) {
      loaded = false;
      body.replaceChildren(h("p", { class: "error" }, `History of ${alias.name}: ${err.message}`));
    }
  }
  return h("details", { class: "alias-history", "data-alias": alias.name, ontoggle: load },
    h("summary", {}, summary), body);
}

// A search of the alias's sink (its live collection): the search box (reindex.js) loads when
// first opened.
function searchDetails(alias) {
  const body = h("div", {});
  let loaded = false;
  async function open(event) {
    if (loaded || !event.target.open) return;
    loaded = true;
    try {
      const { searchBox } = await import("./reindex.js");
      body.replaceChildren(searchBox({ alias: alias.name }));
    } catch (err) {
      loaded = false;
      body.replaceChildren(h("p", { class: "error" }, `Search: ${err.message}`));
    }
  }
  return h("details", { class: "alias-search", "data-alias": alias.name, ontoggle: open },
    h("summary", {}, "Search the live index"), body);
}

export function aliasesPage(main, params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("aliases", {}, offset);
  main.replaceChildren(h("div", { class: "heading" }, h("h1", {}, "Aliases"), pages.el),
    muted("A name for the live iteration of a model; a task created with promote_to moves it "
      + "when its verdict allows."),
    error, table(COLUMNS, rows, { class: "list", id: "aliases" }));
  let shown = null; // the aliases the rows show (names, versions, sinks), as JSON
  poll(async () => {
    let answer;
    try {
      answer = await api(`/aliases?offset=${offset}&limit=${PAGE_SIZE}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      rows.replaceChildren(emptyRow("This server has no aliases API yet.", COLUMNS.length));
      pages.update(0, 0);
      return false;
    }
    const aliases = Array.isArray(answer.body) ? answer.body : [];
    const known = await modelsById(aliases.flatMap((a) => [a.model_id, a.serving?.model_id,
      ...(Array.isArray(a.history) ? a.history.flatMap((c) => [c.model_id, c.previous_model_id])
        : [])]).filter(Boolean));
    // The same aliases as shown: only what their sinks serve is redrawn, so an open history or
    // search stays open while a reindex runs (the page polls until none is reindexing).
    const key = JSON.stringify(aliases.map((a) => [a.name, a.version, a.sink ?? null]));
    if (key === shown) {
      for (const a of aliases) {
        const name = CSS.escape(a.name);
        rows.querySelector(`tr[data-alias="${name}"] .serving-slot`)
          ?.replaceChildren(servingBadge(a.serving) ?? "");
        rows.querySelector(`.alias-sink[data-alias="${name}"]`)
          ?.replaceWith(sinkLine(a, known) ?? "");
      }
      pages.update(aliases.length, answer.total || aliases.length);
      return aliases.some((a) => a.serving?.state === "reindexing");
    }
    shown = key;
    rows.replaceChildren(...aliases.map((a) => [
      h("tr", { "data-alias": a.name },
        h("td", {}, h("strong", {}, a.name), " ",
          h("span", { class: "serving-slot" }, servingBadge(a.serving))),
        h("td", { class: "model" }, modelCell(a.model_id, known)),
        h("td", {}, a.version), h("td", {}, actorCell(a.updated_by)),
        h("td", {}, when(a.updated_at))),
      h("tr", { class: "history-row" },
        h("td", { colspan: COLUMNS.length }, sinkLine(a, known), historyDetails(a, known),
          a.sink ? searchDetails(a) : null)),
    ]).flat());
    if (!aliases.length) {
      rows.append(emptyRow("No aliases yet.", COLUMNS.length));
    }
    pages.update(aliases.length, answer.total || aliases.length);
    return aliases.some((a) => a.serving?.state === "reindexing"); // until it is live or failed
  }, 2000, error);
}
