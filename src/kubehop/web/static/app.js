// kubehop dashboard: polls the read-only API and redraws. No framework; every value from the
// API goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1500;
const SERIES_EVERY = 2; // charts every second poll: Prometheus scrapes every 5 s anyway
const TIER_ORDER = ["edge", "fog", "cloud"];
const CHARTS = ["cpu", "io", "latency", "failed"];
const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d"];

const charts = {};
let migrations = [];
let tick = 0;
let busy = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function clock(t) {
  return t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "-";
}

function num(v, digits) {
  return v === null || v === undefined ? "-" : Number(v).toFixed(digits);
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${path}: HTTP ${response.status}: ${detail}`);
  }
  return body;
}

function showApiError(message) {
  const box = document.getElementById("api-error");
  box.hidden = !message;
  box.textContent = message || "";
}

// --- topology ---------------------------------------------------------------------------------

function renderTopology(topo) {
  const tiers = document.getElementById("tiers");
  const byTier = new Map();
  for (const c of topo.clusters) {
    if (!byTier.has(c.tier)) byTier.set(c.tier, []);
    byTier.get(c.tier).push(c);
  }
  const order = [...TIER_ORDER.filter((t) => byTier.has(t)),
                 ...[...byTier.keys()].filter((t) => !TIER_ORDER.includes(t)).sort()];
  // The store learns where a service runs on the controller's next cycle; a migration that
  // started or ended since then is newer news, shown here at once.
  const running = new Map();
  for (const s of topo.services) {
    const key = `${s.namespace}/${s.name}`;
    const moves = migrations.filter((m) => m.request && m.created > (s.seen || 0)
      && `${m.request.namespace}/${m.request.service}` === key);
    const last = moves[moves.length - 1];
    let cluster = s.cluster;
    let note = `since ${clock(s.since)}`;
    if (last && last.status === "succeeded") {
      cluster = last.request.target;
      note = `moved from ${last.request.source} at ${clock(last.updated)}`;
    } else if (last && (last.status === "running" || last.status === "rolling-back")) {
      note = `${last.status}: to ${last.request.target} (${phaseOf(last)})`;
    }
    if (!running.has(cluster)) running.set(cluster, []);
    running.get(cluster).push({ key, note });
  }
  tiers.replaceChildren(...order.map((tier) => el("div", { class: "tier", "data-tier": tier },
    el("h3", { text: tier }),
    ...byTier.get(tier).map((c) => el("div", { class: "cluster", "data-cluster": c.name },
      el("div", { class: "name", text: c.name }),
      el("div", { class: "muted",
        text: `${num(c.cpu_allocatable, 2)} CPU · ${num(c.mem_allocatable / 2 ** 30, 1)} GiB `
              + `allocatable · LB ${c.load_balancer || "-"} · seen ${clock(c.seen)}` }),
      el("ul", {}, ...(running.get(c.name) || []).map((s) => el("li",
        { "data-service": s.key, text: `${s.key} ${s.note}` }))))))));
  document.getElementById("no-clusters").hidden = topo.clusters.length > 0;
  const body = document.querySelector("#links tbody");
  body.replaceChildren(...topo.links.map((l) => el("tr", { "data-link": `${l.source}-${l.target}` },
    el("td", { text: `${l.source} ↔ ${l.target}` }),
    el("td", { text: num(l.rtt_ms, 2) }),
    el("td", { text: clock(l.at) }))));
}

// --- migrations -------------------------------------------------------------------------------

function phaseOf(m) {
  const open = m.steps.filter((s) => s.state === "started");
  const step = open.length ? open[open.length - 1] : m.steps[m.steps.length - 1];
  return step ? step.name : "-";
}

function renderMigrations(rows) {
  const body = document.querySelector("#migration-table tbody");
  const newest = [...rows].reverse().slice(0, 30);
  body.replaceChildren(...newest.map((m) => {
    const r = m.request || {};
    return el("tr", { "data-migration": m.id, "data-status": m.status },
      el("td", { text: m.id }),
      el("td", { text: `${r.namespace}/${r.service}` }),
      el("td", { text: `${r.source} → ${r.target}` }),
      el("td", { text: r.strategy || "-" }),
      el("td", {}, el("span", { class: `badge status ${m.status.replace("-", "_")}`,
                                text: m.status }),
         m.error ? el("div", { class: "error", text: m.error }) : null),
      el("td", { class: "phase", text: phaseOf(m) }),
      el("td", {}, el("div", { class: "steps" }, ...m.steps.map((s) => el("span",
        { class: `step ${s.state}`, title: `${s.state} ${clock(s.started)}–${clock(s.ended)}`,
          text: s.name })))),
      el("td", { text: clock(m.created) }));
  }));
  document.getElementById("no-migrations").hidden = rows.length > 0;
}

// --- decisions --------------------------------------------------------------------------------

function candidateTable(table) {
  const head = ["cluster", "tier", "filtered", "headroom after", "latency ms", "terms", "score"];
  return el("table", { class: "candidates" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...(table.candidates || []).map((c) => el("tr",
      { class: c.winner ? "winner" : null, "data-candidate": c.cluster },
      el("td", { text: c.cluster + (c.winner ? " (winner)" : "") }),
      el("td", { text: c.tier }),
      el("td", { text: c.filtered || "" }),
      el("td", { text: num(c.headroomAfter, 3) }),
      el("td", { text: num(c.latencyMs, 1) }),
      el("td", { text: Object.entries(c.terms || {}).map(([k, v]) =>
        `${k} ${v >= 0 ? "+" : ""}${Number(v).toFixed(3)}`).join(", ") }),
      el("td", { text: num(c.score, 3) })))));
}

function renderDecisions(rows) {
  const list = document.getElementById("decision-list");
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.decision));
  list.replaceChildren(...rows.map((d) => {
    const details = el("details", { class: "decision", "data-decision": d.id },
      el("summary", {},
        el("span", { class: "muted", text: `#${d.id} ${clock(d.at)} ` }),
        el("span", { class: `badge ${d.action}`, text: d.action }),
        ` ${d.namespace}/${d.service} ${d.source || "-"} → ${d.target || "-"}: `,
        d.explanation,
        d.migration_id ? el("span", { class: "muted", text: ` (migration ${d.migration_id})` })
                       : null),
      candidateTable(d.table || {}));
    if (open.has(String(d.id))) details.open = true;
    return details;
  }));
  document.getElementById("no-decisions").hidden = rows.length > 0;
}

// --- charts -----------------------------------------------------------------------------------

function markers() {
  // A vertical line at each migration's start, and at its end once it has ended.
  const lines = {};
  for (const m of migrations) {
    const r = m.request || {};
    const what = `${r.service} ${r.source}→${r.target}`;
    lines[`start-${m.id}`] = {
      type: "line", xMin: m.created, xMax: m.created, borderColor: "#2563eb", borderWidth: 1.5,
      borderDash: [5, 4],
      label: { display: true, content: `start ${what}`, position: "start",
               font: { size: 10 }, backgroundColor: "rgba(37,99,235,.8)" } };
    if (m.status !== "running" && m.status !== "rolling-back") {
      const ok = m.status === "succeeded";
      lines[`end-${m.id}`] = {
        type: "line", xMin: m.updated, xMax: m.updated, borderColor: ok ? "#15803d" : "#b91c1c",
        borderWidth: 1.5, borderDash: [5, 4],
        label: { display: true, content: `${m.status} ${what}`, position: "end",
                 font: { size: 10 },
                 backgroundColor: ok ? "rgba(21,128,61,.8)" : "rgba(185,28,28,.8)" } };
    }
  }
  return lines;
}

function makeChart(name) {
  return new Chart(document.getElementById(`chart-${name}`), {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      normalized: true,
      elements: { point: { radius: 0 }, line: { borderWidth: 1.5, tension: 0 } },
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: {
        x: { type: "linear", ticks: { callback: (v) => clock(v), maxTicksLimit: 8 } },
        y: { beginAtZero: true, title: { display: true, text: "" } },
      },
      plugins: {
        title: { display: true, text: name },
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: { callbacks: { title: (items) => items.length ? clock(items[0].parsed.x) : "" } },
        annotation: { annotations: {} },
      },
    },
  });
}

function renderSeries(name, answer) {
  const chart = charts[name];
  const error = document.getElementById(`err-${name}`);
  error.hidden = !answer.error;
  error.textContent = answer.error ? `${answer.title}: ${answer.error}` : "";
  chart.options.plugins.title.text = `${answer.title} (${answer.unit})`;
  chart.options.scales.y.title.text = answer.unit;
  chart.options.scales.x.min = answer.start;
  chart.options.scales.x.max = answer.end;
  chart.options.plugins.annotation.annotations = markers();
  chart.data.datasets = answer.series.map((s, i) => ({
    label: s.name, borderColor: COLORS[i % COLORS.length],
    backgroundColor: COLORS[i % COLORS.length],
    data: s.points.map(([x, y]) => ({ x, y })) }));
  chart.update("none");
}

async function pollSeries() {
  const range = document.getElementById("range").value;
  await Promise.all(CHARTS.map(async (name) => {
    try {
      renderSeries(name, await getJSON(`api/v1/series?query=${name}&range=${range}`));
    } catch (err) {
      const error = document.getElementById(`err-${name}`);
      error.hidden = false;
      error.textContent = err.message;
    }
  }));
}

// --- the loop ---------------------------------------------------------------------------------

async function poll() {
  if (busy) return;
  busy = true;
  try {
    const [topo, migs, decisions] = await Promise.all([
      getJSON("api/v1/topology"), getJSON("api/v1/migrations"),
      getJSON("api/v1/decisions?limit=20")]);
    migrations = migs;
    renderTopology(topo);
    renderMigrations(migs);
    renderDecisions(decisions);
    showApiError(null);
    if (tick % SERIES_EVERY === 0) await pollSeries();
    document.getElementById("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
  } catch (err) {
    showApiError(`cannot read the API: ${err.message}`);
  } finally {
    tick += 1;
    busy = false;
  }
}

function start() {
  for (const name of CHARTS) charts[name] = makeChart(name);
  document.getElementById("range").addEventListener("change", () => { tick = 0; poll(); });
  poll();
  setInterval(poll, POLL_MS);
}

start();
