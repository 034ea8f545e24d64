// embtune dashboard: the aliases page. An alias (e.g. `production`) names the live iteration of
// a model; each row opens its history of changes (set, promote, rollback), newest first.
// A server without the aliases API answers 404: the page says so instead of failing.
import {
  api, emptyRow, enc, h, modelLink, modelsById, muted, table, taskLink, when,
} from "./dom.js";
import { PAGE_SIZE, pager, poll } from "./nav.js";

const COLUMNS = ["Alias", "Model", "Version", "Updated by", "Updated"];

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

export function aliasesPage(main, params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const rows = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const pages = pager("aliases", {}, offset);
  main.replaceChildren(h("div", { class: "heading" }, h("h1", {}, "Aliases"), pages.el),
    muted("A name for the live iteration of a model; a task created with promote_to moves it "
      + "when its verdict allows."),
    error, table(COLUMNS, rows, { class: "list", id: "aliases" }));
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
    const known = await modelsById(aliases.flatMap((a) => [a.model_id,
      ...(Array.isArray(a.history) ? a.history.flatMap((c) => [c.model_id, c.previous_model_id])
        : [])]).filter(Boolean));
    rows.replaceChildren(...aliases.map((a) => [
      h("tr", { "data-alias": a.name },
        h("td", {}, h("strong", {}, a.name)),
        h("td", { class: "model" }, modelCell(a.model_id, known)),
        h("td", {}, a.version), h("td", {}, actorCell(a.updated_by)),
        h("td", {}, when(a.updated_at))),
      h("tr", { class: "history-row" },
        h("td", { colspan: COLUMNS.length }, historyDetails(a, known))),
    ]).flat());
    if (!aliases.length) {
      rows.append(emptyRow("No aliases yet.", COLUMNS.length));
    }
    pages.update(aliases.length, answer.total || aliases.length);
    return false;
  }, 0, error);
}
