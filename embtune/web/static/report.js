// embtune dashboard: a finished task's report. The verdict leads, then the figures it rests on,
// each titled with its evidence: a judged set is ground truth; clicks on the full catalogue
// favour the source model (clicks exist only where it showed the item), so only the debiased
// shown-list figure may carry a click verdict. Old tasks have only flat before/after figures.
import { h, keyValues, muted, num, table } from "./dom.js";

const VERDICTS = new Set(["better", "worse", "inconclusive"]);
const VERDICT_TONE = { better: "good", worse: "bad", inconclusive: "" };
const BIASED = "favours the source model: clicks exist only where it showed the item";

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const names = (before, after) => [...new Set([...Object.keys(before), ...Object.keys(after)])];
const tone = (change) => (change > 0 ? "good" : change < 0 ? "bad" : "");
const setName = (set) => (isObject(set) ? set.name || set.id : null) || "an evaluation set";

function interval(ci) {
  return Array.isArray(ci) && ci.length === 2
    ? `[${num(ci[0], true, true)}, ${num(ci[1], true, true)}]` : "—";
}

// One row of figures; `ci` adds a 95 % interval cell (undefined: no such column).
function figureRow(name, before, after, delta, ci, attrs = {}) {
  const numbers = typeof after === "number" && typeof before === "number";
  const change = delta ?? (numbers ? after - before : null);
  return h("tr", { "data-metric": name, ...attrs }, h("th", {}, name),
    h("td", {}, num(before, false, true)), h("td", {}, num(after, false, true)),
    h("td", { class: tone(change) }, num(change, true, true)),
    ci === undefined ? null : h("td", { class: "ci" }, interval(ci)));
}

function propensities(metrics) {
  const used = metrics.clicks?.shown_lists?.propensities;
  if (!isObject(used)) return null;
  const [theta, alpha, beta] = [used.examination, used.alpha, used.beta]
    .map((list) => (Array.isArray(list) ? list : []));
  const summary = `Propensities: ${used.source ?? "?"}${used.method ? ` (${used.method})` : ""}`;
  const counts = [["observations", used.observations], ["sessions", used.sessions],
    ["clicks", used.clicks], ["EM iterations", used.iterations]]
    .filter(([, n]) => typeof n === "number").map(([what, n]) => `${n} ${what}`);
  if (typeof used.converged === "boolean") {
    counts.push(used.converged ? "converged" : "not converged");
  }
  return h("details", { id: "propensities" }, h("summary", {}, summary),
    used.reason ? h("p", { class: "muted" }, used.reason) : null,
    counts.length ? h("p", { class: "muted" }, counts.join(" · ")) : null,
    theta.length ? table(["Rank", "Examination θ", "α", "β"], theta.map((t, i) =>
      h("tr", {}, h("td", {}, i + 1), h("td", {}, num(t)), h("td", {}, num(alpha[i])),
        h("td", {}, num(beta[i])))), { class: "metrics" }) : null);
}

function verdictBlock(metrics) {
  const v = metrics.verdict;
  if (!isObject(v)) return null;
  const word = VERDICTS.has(v.verdict) ? v.verdict : "inconclusive";
  const judged = v.basis === "judged";
  if (!judged && v.basis !== "clicks") { // neither a judged set nor clicks: no figure to show
    return h("div", { id: "verdict", class: `verdict ${word}` },
      h("p", { class: "verdict-head" }, h("span", { class: `badge ${word}` }, word), " ",
        h("span", { class: "muted" }, "no evidence to decide on")),
      v.reason ? h("p", { class: "muted verdict-reason" }, v.reason) : null);
  }
  return h("div", { id: "verdict", class: `verdict ${word}` },
    h("p", { class: "verdict-head" },
      h("span", { class: `badge ${word}` }, word), " ",
      h("strong", { class: "verdict-metric" }, v.metric ?? "?"), " ",
      // coloured by the verdict, not the sign: an unproven rise is not shown as a gain
      h("span", { class: `verdict-delta ${VERDICT_TONE[word]}` }, num(v.delta, true, true)), " ",
      h("span", { class: "verdict-ci" }, `95% ${interval(v.ci95)}`)),
    keyValues({
      basis: judged ? h("span", {}, "judged set ", h("strong", {}, setName(v.evaluation_set)))
        : "clicks, debiased (shown lists, split by query)",
      queries: v.queries ?? "—",
      "before → after": `${num(v.before, false, true)} → ${num(v.after, false, true)}`,
    }),
    v.reason ? h("p", { class: "muted verdict-reason" }, v.reason) : null,
    judged ? null : propensities(metrics));
}

function promotionLine(promotion) {
  if (!isObject(promotion)) return null;
  const rule = promotion.promote_if ? ` (promote if ${promotion.promote_if})` : "";
  return h("p", { id: "promotion", class: promotion.promoted ? "promoted" : "not-promoted" },
    h("strong", {}, promotion.promoted ? "Promoted" : "Not promoted"), " to ",
    h("a", { href: "#/aliases" }, promotion.alias ?? "?"), rule,
    promotion.reason ? `: ${promotion.reason}` : "");
}

function judgedTable(judged) {
  const { before = {}, after = {}, delta = {}, ci95 = {} } = judged;
  const dropped = judged.queries_without_catalogued_items;
  return [h("h3", {}, `Judged set: ${setName(judged.evaluation_set)} · ${judged.queries ?? "?"} `
    + "queries"),
  dropped ? h("p", { class: "muted note" },
    `${dropped} judged ${dropped === 1 ? "query was" : "queries were"} left out: none of `
    + "their relevant items is in the catalogue.") : null,
  table(["Metric", "Before", "After", "Δ", "95% interval"], names(before, after)
    .map((m) => figureRow(m, before[m], after[m], delta[m], ci95[m] ?? null)),
  { class: "metrics", id: "judged-table" })];
}

function clickTable(clicks) {
  const shown = isObject(clicks.shown_lists) ? clicks.shown_lists : null;
  const full = isObject(clicks.full_catalogue) ? clicks.full_catalogue : {};
  const { before = {}, after = {}, delta = {}, ci95 = {} } = full;
  const counts = shown ? `; ${shown.queries ?? "?"} queries, ${shown.sessions ?? "?"} sessions`
    : "";
  return [h("h3", {}, `Clicks on validation sessions (split by ${clicks.split ?? "?"}${counts})`),
    table(["Figure", "Before", "After", "Δ", "95% interval"], [
      shown ? figureRow(`${shown.metric ?? "click_dcg@10"}, shown lists, debiased`, shown.before,
        shown.after, shown.delta, shown.ci95 ?? null, { class: "debiased" }) : null,
      names(before, after).map((m) => figureRow(`${m}, full catalogue *`,
        before[m], after[m], delta[m], ci95[m] ?? null, { class: "biased" })),
    ], { class: "metrics", id: "click-table" }),
    h("p", { class: "muted note" }, `* full catalogue: ${full.note || BIASED}`)];
}

function perQueryView(perQuery, source) {
  const worst = perQuery.worst_regressions || [];
  return h("div", { id: "per-query" }, h("h3", {}, `Per query (${source})`),
    h("p", {}, h("span", { class: "good" }, `${perQuery.better ?? 0} better`), " · ",
      h("span", { class: "bad" }, `${perQuery.worse ?? 0} worse`), " · ",
      `${perQuery.same ?? 0} same`),
    worst.length ? table(["Worst regressions", "Rank before", "Rank after"], worst.map((r) =>
      h("tr", {}, h("td", {}, r.query), h("td", {}, r.rank_before ?? "not found"),
        h("td", {}, r.rank_after ?? "not found")))) : null);
}

// How fast the run went: each phase's seconds beside its estimate, and each model phase's FLOP
// rate against the host's matmul peak. Every figure is optional (older tasks, other methods, a
// peak never measured): a missing one is a dash. The estimate's fixed cost covers load, examples
// and save together, so it is compared with their sum on a row of its own.
const PHASES = [["load", "load", null], ["examples", "examples", null],
  ["evaluate_source", "evaluate source", "evaluate_source_s"], ["train", "train", "train_s"],
  ["evaluate_tuned", "evaluate tuned", "evaluate_tuned_s"], ["save", "save", null]];
const BASIS = {
  measured: "Estimated from the measured throughput of earlier runs of this model size.",
  constants: "Estimated from fixed constants: no run of this model size measured yet.",
};
const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
const fixed1 = (value) => (isNumber(value) ? value.toFixed(1) : "—");
const percent = (value) => (isNumber(value) ? `${(value * 100).toFixed(1)}%` : "—");
const objectOr = (value) => (isObject(value) ? value : {});

function peaksNote(utilization) {
  const peaks = Object.entries(objectOr(utilization.peak_gflops))
    .filter(([, value]) => isNumber(value))
    .map(([name, value]) => `${name} ${value.toFixed(0)} GFLOP/s`);
  if (!peaks.length) return "No matmul peak measured on this host: % of peak unknown.";
  const probe = objectOr(utilization.peak_probe);
  const where = [probe.device, isNumber(probe.threads) ? `${probe.threads} threads` : null]
    .filter(Boolean);
  return `Peak ${peaks.join(", ")}${where.length ? ` (${where.join(", ")})` : ""}.`;
}

function totalsNote(performance, estimated) {
  if (!isNumber(performance.total_s)) return null;
  const expected = estimated.total_s;
  let line = `Took ${performance.total_s.toFixed(1)} s`;
  if (isNumber(expected) && expected > 0) {
    const off = Math.round(((performance.total_s - expected) / expected) * 100);
    line += `, estimated ${expected.toFixed(1)} s (${off > 0 ? "+" : ""}${off}%)`;
  }
  const once = objectOr(performance.throughput).once_per_process_s;
  if (isNumber(once) && once >= 0.05) {
    line += `; ${once.toFixed(1)} s of the load was paid once per worker process (imports, `
      + "the peak probe), which estimates leave out";
  }
  return `${line}.`;
}

function performanceView(performance) {
  const seconds = objectOr(performance.phases_s);
  const utilization = objectOr(performance.utilization);
  const work = objectOr(utilization.phases);
  const estimated = objectOr(objectOr(performance.throughput).estimated);
  const hasEstimate = Object.keys(estimated).length > 0;
  const rows = PHASES.filter(([key]) => key in seconds || key in work).map(([key, label, est]) => {
    const phase = isObject(work[key]) ? work[key] : null;
    return h("tr", { "data-phase": key }, h("th", {}, label),
      h("td", {}, fixed1(seconds[key] ?? phase?.seconds)),
      h("td", {}, est && hasEstimate ? fixed1(estimated[est]) : ""),
      h("td", {}, phase?.precision ?? ""),
      h("td", {}, phase ? fixed1(phase.gflop) : ""),
      h("td", {}, phase ? fixed1(phase.achieved_gflops) : ""),
      h("td", {}, phase ? percent(phase.fraction_of_peak) : ""));
  });
  const fixedSeconds = ["load", "examples", "save"].map((key) => seconds[key]).filter(isNumber);
  if (hasEstimate && fixedSeconds.length) {
    rows.push(h("tr", { "data-phase": "fixed", class: "muted" },
      h("th", {}, "fixed (load, examples, save)"),
      h("td", {}, fixed1(fixedSeconds.reduce((a, b) => a + b, 0))),
      h("td", {}, fixed1(estimated.fixed_s)), h("td", {}), h("td", {}), h("td", {}),
      h("td", {})));
  }
  const notes = [Object.keys(utilization).length ? peaksNote(utilization) : null,
    BASIS[estimated.basis] ?? null, totalsNote(performance, estimated)].filter(Boolean);
  return h("div", { id: "performance" }, h("h3", {}, "Performance"),
    table(["Phase", "Seconds", "Estimated s", "Precision", "GFLOP", "GFLOP/s", "% of peak"],
      rows, { class: "metrics", id: "performance-table" }),
    notes.map((note) => h("p", { class: "muted note" }, note)));
}

// Every part of a task's (or model's) metrics, in reading order; the raw JSON last.
export function metricsView(metrics) {
  if (!metrics) return [muted("No metrics yet.")];
  const out = [verdictBlock(metrics), promotionLine(metrics.promotion)].filter(Boolean);
  const judged = isObject(metrics.judged) ? metrics.judged : null;
  const clicks = isObject(metrics.clicks) ? metrics.clicks : null;
  if (judged) out.push(...judgedTable(judged));
  if (clicks) out.push(...clickTable(clicks));
  const { before = {}, after = {}, delta = {} } = metrics;
  if (!judged && !clicks && (metrics.before || metrics.after)) { // an old task's flat figures
    out.push(h("h3", {}, "Validation sessions"), table(["Metric", "Before", "After", "Δ"],
      names(before, after).map((name) => figureRow(name, before[name], after[name], delta[name])),
      { class: "metrics", id: "metrics-table" }));
  }
  if (isObject(metrics.per_query)) {
    out.push(perQueryView(metrics.per_query, judged ? "judged set" : "validation sessions"));
  }
  for (const name of ["data", "training"]) {
    if (isObject(metrics[name])) {
      out.push(h("h3", {}, name[0].toUpperCase() + name.slice(1)), keyValues(metrics[name]));
    }
  }
  if (isObject(metrics.performance)) out.push(performanceView(metrics.performance));
  out.push(h("details", { open: !out.length }, h("summary", {}, "Raw metrics JSON"),
    h("pre", { id: "metrics-json" }, JSON.stringify(metrics, null, 2))));
  return out;
}

// A task's hyperparameter search: one row per trial (params, state, value, where it was
// pruned), the best one marked; the summary line comes from the result's `metrics.search`.
export function trialsView(trials, search) {
  if (!Array.isArray(trials) || !trials.length) return [muted("No trial has run yet.")];
  const best = isObject(search) ? search.best_trial : null;
  const params = (p) => Object.entries(objectOr(p))
    .map(([k, v]) => `${k}=${isNumber(v) && !Number.isInteger(v) ? v.toPrecision(3) : v}`)
    .join(", ");
  const rows = trials.map((t) => h("tr", { "data-trial": t.number,
    class: t.number === best ? "best" : "" },
  h("td", {}, t.number === best ? `${t.number} ★` : t.number),
  h("td", {}, h("span", { class: `badge ${TRIAL_TONE[t.state] ?? ""}` }, t.state)),
  h("td", { class: "mono" }, params(t.params)),
  h("td", {}, num(t.value, false, true)),
  h("td", {}, isNumber(t.pruned_at) ? `epoch ${t.pruned_at / 100}` : ""),
  h("td", { class: "muted" }, t.detail ?? "")));
  const summary = isObject(search)
    ? `${search.trials} trials on ${search.metric}: ${search.completed} complete, `
      + `${search.pruned} pruned${search.failed ? `, ${search.failed} failed` : ""}; `
      + `best trial ${search.best_trial} (${num(search.best_value, false, true)})`
    : null;
  return [summary ? h("p", { id: "search-summary" }, summary) : null,
    table(["#", "State", "Params", "Value", "Pruned at", "Detail"], rows,
      { class: "metrics", id: "trials-table" })].filter(Boolean);
}

const TRIAL_TONE = { complete: "done", pruned: "canceled", failed: "failed",
  interrupted: "pending", running: "processing" };
