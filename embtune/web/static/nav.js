// embtune dashboard: moving between pages and keeping one page fresh. Every refresh belongs to
// the page that started it, so a late response never paints over the page shown now.
import { h } from "./dom.js";

export const PAGE_SIZE = 20;

let timer = null; // the current page's refresh timer
let route = 0; // bumped on navigation so a late response never paints over another page

export function go(page, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  location.hash = `#/${page}${query ? `?${query}` : ""}`;
}

// Runs `load` now and again every `ms` while it returns true; the returned function reloads
// at once (after an action). Errors show in `errorEl` and the polling carries on.
export function poll(load, ms, errorEl) {
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

export function pager(page, params, offset) {
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

// A page whose module loads on its first visit (`load`: `() => import("./page.js")`): shown once
// loaded unless the user moved on meanwhile. A module that cannot load says so in place of the
// page; the rest of the dashboard, which never imported it, keeps working.
export async function lazyPage(main, load, show) {
  const mine = route;
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let module;
  try {
    module = await load();
  } catch (err) {
    if (mine === route) {
      main.replaceChildren(h("p", { class: "error" }, `Could not load this page: ${err.message}`));
    }
    return;
  }
  if (mine === route) show(module);
}

// Called on every navigation: the old page's refresh stops and its pending responses are ignored.
export function leavePage() {
  clearTimeout(timer);
  route += 1;
}
