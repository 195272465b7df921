// driftwarden status page: reads the daemon's JSON API and draws each monitor with uPlot (vendored).
// Every value goes into the DOM as text (never as HTML). Refreshes itself every REFRESH_MS.
"use strict";

const REFRESH_MS = 3000;   // fresher than a person reads; a few small requests per model each time
const MAX_POINTS = 1000;   // the API's largest page: a monitor's whole in-memory history
const charts = new Map();  // "model/monitor" -> {plot, marks}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

async function api(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

const fmt = (v) => v == null ? "–" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v));
const ago = (t) => t == null ? "never" : `${Math.max(0, Math.round(Date.now() / 1000 - t))} s ago`;

function summary(s) {
  const box = document.getElementById("summary");
  box.replaceChildren(
    el("span", {}, "version ", el("b", {}, s.version)),
    el("span", {}, "up ", el("b", {}, `${Math.round(s.uptime_seconds)} s`)),
    el("span", {class: s.ready ? "ok" : "bad", id: "ready"}, s.ready ? "ready" : `not ready: ${s.ready_reason}`),
    el("span", {}, "records ", el("b", {}, s.records)),
    el("span", {}, "events ", el("b", {}, s.events)),
    el("span", {}, "dead letters ", el("b", {}, Object.values(s.dead_letters).reduce((a, b) => a + b, 0))),
    el("span", {}, "last checkpoint ", el("b", {}, ago(s.last_checkpoint_at))),
    el("span", {}, "actions running ", el("b", {}, s.running_actions)),
  );
}

// Decisions as vertical lines at their event index, labelled with the rule.
function decisionMarks(marks) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#c01048"; ctx.fillStyle = "#c01048"; ctx.lineWidth = 1; ctx.setLineDash([4, 3]);
        ctx.font = `${10 * devicePixelRatio}px system-ui`;
        let labelled = -Infinity;  // one label per stretch of close marks
        for (const d of marks.list) {
          const x = Math.round(u.valToPos(d.at, "x", true));
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          const width = ctx.measureText(d.rule).width + 8;
          if (x - labelled > width) { ctx.fillText(d.rule, x + 3, u.bbox.top + 12 * devicePixelRatio); labelled = x; }
        }
        ctx.restore();
      }],
    },
  };
}

function plotData(points) {
  return [
    points.map((p) => p.at),
    points.map((p) => p.value),
    points.map((p) => p.threshold),
    points.map((p) => (p.drift ? p.value : null)),
  ];
}

function drawChart(key, box, points, decisions) {
  const data = plotData(points);
  let entry = charts.get(key);
  if (entry && !box.contains(entry.plot.root)) { entry.plot.destroy(); charts.delete(key); entry = undefined; }
  if (!entry) {
    const marks = {list: decisions};
    const plot = new uPlot({
      width: Math.max(300, box.clientWidth || 400), height: 180,
      scales: {x: {time: false}},
      legend: {live: false},
      axes: [{label: "event index"}, {}],
      series: [
        {label: "event"},
        {label: "value", stroke: "#2e5bff", width: 1.5, points: {size: 4}},
        {label: "threshold", stroke: "#98a2b3", dash: [6, 4], width: 1, points: {show: false}},
        {label: "drift", stroke: "transparent", points: {show: true, size: 7, fill: "#c01048", stroke: "#c01048"}},
      ],
      plugins: [decisionMarks(marks)],
    }, data, box);
    entry = {plot, marks};
    charts.set(key, entry);
  } else {
    entry.marks.list = decisions;
    entry.plot.setData(data);
  }
  box.dataset.points = String(entry.plot.data[0].length);
}

function monitorCard(model, m) {
  const id = `chart-${model}-${m.name}`;
  let card = document.getElementById(`monitor-${model}-${m.name}`);
  if (!card) {
    card = el("div", {class: "monitor", id: `monitor-${model}-${m.name}`, "data-model": model, "data-monitor": m.name},
      el("div", {class: "title"}, el("b", {}, m.name), el("span", {class: "kind"}, m.kind), el("span", {class: "latest"})),
      el("div", {class: "chart", id, "data-points": "0"}));
  }
  const latest = m.latest || {};
  card.querySelector(".latest").replaceChildren(
    `value ${fmt(latest.value)} · threshold ${fmt(latest.threshold)} · `,
    el("span", {class: latest.drift ? "bad" : "ok"}, latest.drift ? "drift" : "no drift"),
    m.window_fill == null ? "" : ` · window ${Math.round(100 * m.window_fill)} %`);
  return card;
}

function rulesTable(rules) {
  return el("table", {class: "rules"},
    el("tr", {}, el("th", {}, "rule"), el("th", {}, "does"), el("th", {}, "state"), el("th", {}, "decisions"), el("th", {}, "silenced until")),
    ...rules.map((r) => el("tr", {},
      el("td", {}, r.name), el("td", {}, r.action), el("td", {}, el("span", {class: `pill ${r.state}`}, r.state)),
      el("td", {}, r.decisions), el("td", {}, r.silenced_until ? new Date(r.silenced_until * 1000).toLocaleString() : "–"))));
}

function gateNumbers(info) {
  const parts = [];
  for (const side of ["candidate", "champion"]) {
    const m = info[side];
    if (m && typeof m === "object") parts.push(`${side} ` + Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(", "));
  }
  return parts.join(" · ");
}

function lifecycles(actions) {
  const rows = actions.filter((a) => a.type === "retrain").slice(-10).reverse();
  if (!rows.length) return el("div", {class: "empty"}, "no retrain yet");
  return el("table", {class: "actions"},
    el("tr", {}, el("th", {}, "decision"), el("th", {}, "state"), el("th", {}, "steps"), el("th", {}, "gate"), el("th", {}, "version")),
    ...rows.map((a) => el("tr", {},
      el("td", {}, a.key), el("td", {}, el("span", {class: `pill ${a.state}`}, a.state)),
      el("td", {class: "steps"}, (a.steps || []).filter((s) => s.state).map((s) => s.state).filter((s, i, all) => all.indexOf(s) === i).join(" → ")),
      el("td", {}, gateNumbers(a.info || {})), el("td", {}, a.version || "–"))));
}

function versionsTable(versions) {
  if (!versions.length) return el("div", {class: "empty"}, "no version registered");
  return el("table", {class: "versions"},
    el("tr", {}, el("th", {}, "version"), el("th", {}, "aliases"), el("th", {}, "created"), el("th", {}, "trained from"), el("th", {}, "decision"), el("th", {}, "metrics")),
    ...versions.slice().reverse().map((v) => el("tr", {},
      el("td", {}, v.version), el("td", {}, v.aliases.join(", ")), el("td", {}, v.created || "–"), el("td", {}, v.parent || "–"),
      el("td", {}, v.decision || "–"), el("td", {}, Object.entries(v.metrics || {}).map(([k, x]) => `${k} ${fmt(x)}`).join(", ")))));
}

function evidenceTable(reports) {
  const rows = reports.slice(-10).reverse();
  if (!rows.length) return el("div", {class: "empty"}, "no drift report yet");
  return el("table", {class: "evidence"},
    el("tr", {}, el("th", {}, "rule"), el("th", {}, "event"), el("th", {}, "window"), el("th", {}, "severity"), el("th", {}, "report")),
    ...rows.map((e) => el("tr", {},
      el("td", {}, e.rule), el("td", {}, e.at), el("td", {}, `${e.window[0]} .. ${e.window[1]}`), el("td", {}, e.severity || "–"),
      el("td", {}, el("a", {class: "evidence-link", href: e.url, target: "_blank", rel: "noopener"}, "Evidently report")))));
}

async function renderModel(main, name) {
  const enc = encodeURIComponent(name);
  const [model, decisions, actions, versions, evidence] = await Promise.all([
    api(`api/v1/models/${enc}`),
    api(`api/v1/decisions?model=${enc}&limit=${MAX_POINTS}`),
    api(`api/v1/actions?model=${enc}&limit=${MAX_POINTS}`),
    api(`api/v1/models/${enc}/versions?limit=${MAX_POINTS}`),
    api(`api/v1/evidence?model=${enc}&limit=${MAX_POINTS}`),
  ]);
  const retrains = actions.items.filter((a) => a.type === "retrain").slice(-10);
  const detailed = await Promise.all(retrains.map((a) => api(`api/v1/actions/${a.key.split("/").map(encodeURIComponent).join("/")}`)));
  let section = document.getElementById(`model-${name}`);
  if (!section) {
    section = el("section", {class: "model", id: `model-${name}`, "data-model": name},
      el("h2", {}, name), el("div", {class: "meta"}), el("div", {class: "monitors"}),
      el("h3", {}, "rules"), el("div", {class: "rules-box"}),
      el("h3", {}, "drift evidence"), el("div", {class: "evidence-box"}),
      el("h3", {}, "retrain lifecycles"), el("div", {class: "actions-box"}),
      el("h3", {}, "registry versions"), el("div", {class: "versions-box"}));
    main.append(section);
  }
  section.querySelector(".meta").textContent =
    `policy ${model.policy} · champion ${model.champion || "none"} · ${model.events} events · ${model.labels_joined} labels joined`;
  const grid = section.querySelector(".monitors");
  const marks = decisions.items.map((d) => ({at: d.at, rule: d.rule}));
  for (const m of model.monitors) {
    const card = monitorCard(name, m);
    if (!card.parentNode) grid.append(card);
    const history = await api(`api/v1/models/${enc}/monitors/${encodeURIComponent(m.name)}/history?limit=${MAX_POINTS}`);
    drawChart(`${name}/${m.name}`, card.querySelector(".chart"), history.items, marks);
  }
  section.querySelector(".rules-box").replaceChildren(rulesTable(model.rules));
  section.querySelector(".evidence-box").replaceChildren(evidenceTable(evidence.items));
  section.querySelector(".actions-box").replaceChildren(lifecycles(detailed));
  section.querySelector(".versions-box").replaceChildren(versionsTable(versions.items));
}

async function refresh() {
  const main = document.getElementById("models");
  try {
    const status = await api("api/v1/status");
    summary(status);
    for (const m of status.models) await renderModel(main, m.name);
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) {
    document.getElementById("summary").replaceChildren(el("span", {class: "bad"}, `cannot reach the daemon (${e.message})`));
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
