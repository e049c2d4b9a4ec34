// Accord status page: renders /api/status (overview) or /api/jobs/{id}
// (a job) and polls it every few seconds. Everything is built with DOM
// calls and textContent, never innerHTML: job names, regions and reasons
// come from admins and participants.
"use strict";

const POLL_MS = 3000;

// ---- small helpers ---------------------------------------------------------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function $(id) { return document.getElementById(id); }

function pct(x, digits = 1) { return x == null ? "–" : (100 * x).toFixed(digits) + "%"; }
function num(n) { return n == null ? "–" : Number(n).toLocaleString("en-US"); }
function eps(x) { return x == null ? "–" : x.toPrecision(3); }

function when(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  const now = new Date();
  const time = d.toLocaleTimeString("en-GB", { hour12: false });
  if (d.toDateString() === now.toDateString()) return time;
  return d.toISOString().slice(0, 10) + " " + time;
}

function duration(ms) {
  if (ms == null || ms <= 0) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
  return m + " min " + s + " s";
}

function badge(status) {
  const s = (status || "unknown").toLowerCase();
  return el("span", { class: "badge " + s, text: s.replace("_", " ") });
}

function card(label, value, detail) {
  return el("div", { class: "card" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    detail ? el("div", { class: "detail" }, detail) : null);
}

function progressBar(p, status, big) {
  const cls = "progress" + (big ? " big" : "") + (status === "SUCCEEDED" ? " done" : status === "FAILED" ? " failed" : "");
  const bar = el("div", { class: "bar", style: "width:" + (100 * Math.max(0, Math.min(1, p))).toFixed(1) + "%" });
  return el("div", { class: cls }, bar);
}

function fillTable(id, rows, emptyId) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows);
  if (emptyId) {
    $(emptyId).hidden = rows.length > 0;
    $(id).hidden = rows.length === 0;
  }
}

function setAnswered(v) {
  const role = v.raft.state === "Leader" ? "leader" : v.raft.state.toLowerCase();
  $("answered").replaceChildren("Answered by ", el("b", { text: v.answered_by }), " (" + role + ")");
}

function raftLine(v) {
  const r = v.raft;
  const parts = ["Leader: " + (r.leader || "none known"), "term " + r.term, "commit index " + num(r.commit_index),
    "applied " + num(r.applied_index)];
  if (r.last_contact_ms != null) parts.push("last contact with the leader " + r.last_contact_ms + " ms ago");
  if (!r.serving) parts.push("NOT SERVING: no leader heard from recently");
  return parts.join(" · ");
}

// ---- polling ---------------------------------------------------------------

function poll(url, render) {
  let timer = null;
  let lastOk = 0;
  async function tick() {
    clearTimeout(timer);
    const live = $("live"), text = $("live-text");
    try {
      const res = await fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await res.json().catch(() => null);
      if (!res.ok) {
        const who = body && body.answered_by ? " (answered by " + body.answered_by + ")" : "";
        throw new Error(((body && body.error) || res.status + " " + res.statusText) + who);
      }
      render(body);
      lastOk = Date.now();
      $("error").hidden = true;
      live.dataset.state = "ok";
      text.textContent = "Live · updated " + when(lastOk);
    } catch (err) {
      live.dataset.state = lastOk ? "stale" : "error";
      text.textContent = lastOk ? "Stale · last update " + when(lastOk) : "No answer";
      $("error").hidden = false;
      $("error").textContent = (lastOk ? "Could not refresh: " : "Could not load: ") + err.message;
    }
    timer = setTimeout(tick, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  tick();
}

// ---- overview --------------------------------------------------------------

function renderOverview(v) {
  setAnswered(v);
  const alive = v.members.filter(m => m.gossip === "alive").length;
  const voters = v.members.filter(m => m.raft_role === "leader" || m.raft_role === "voter").length;
  const running = v.jobs.filter(j => j.status === "RUNNING").length;
  const p = v.participants;
  $("cards").replaceChildren(
    card("Coordinators", el("span", {}, String(alive), el("small", { text: " / " + v.members.length + " alive" })), voters + " Raft voters"),
    card("Leader", v.raft.leader || "none", "term " + v.raft.term + " · commit index " + num(v.raft.commit_index)),
    card("Jobs", el("span", {}, String(running), el("small", { text: " running" })), v.jobs.length + " in total"),
    card("Participants", el("span", {}, p.connected == null ? "–" : String(p.connected), el("small", { text: " / " + p.registered + " connected" })),
      p.connected == null ? "connections are known to the leader" + (p.connected_known_by ? " (" + p.connected_known_by + ")" : "") : p.regions.length + " regions"));

  $("raft-line").textContent = raftLine(v);
  fillTable("members", v.members.map(m => el("tr", { class: m.self ? "self" : null, "data-name": m.name },
    el("td", {}, el("b", { text: m.name }), m.self ? el("span", { class: "you", text: "this node" }) : null),
    el("td", { text: m.organization || "–" }),
    el("td", {}, badge(m.raft_role)),
    el("td", {}, el("span", { class: "state " + m.gossip, text: m.gossip })),
    el("td", { class: "mono", text: m.grpc_address || "–" }),
    el("td", { class: "mono", text: m.raft_address || "–" }))));

  $("jobs-line").textContent = v.jobs.length ? "Newest first; open a job for its round history." : "";
  const sparks = [];
  fillTable("jobs", v.jobs.map(j => {
    const spark = el("canvas", { class: "spark", width: "140", height: "32" });
    sparks.push([spark, j]);
    return el("tr", { "data-job": j.id },
      el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(j.id), text: j.name || j.id }), el("div", { class: "sub mono", text: j.id })),
      el("td", {}, el("span", { class: "mono", text: j.model }), el("div", { class: "sub", text: j.dataset })),
      el("td", {}, badge(j.status), j.reason ? el("div", { class: "sub", title: j.reason, text: shorten(j.reason, 48) }) : null),
      el("td", { class: "num" }, j.rounds_committed + " / " + j.rounds_limit,
        j.aborted ? el("div", { class: "sub", text: j.aborted + " aborted" }) : null),
      el("td", {}, el("div", { class: "progress-cell" }, progressBar(j.progress, j.status), el("span", { class: "pct", text: pct(j.progress, 0) }))),
      el("td", { class: "num" }, pct(j.last_accuracy),
        j.target_accuracy ? el("div", { class: "sub", text: "target " + pct(j.target_accuracy, 0) }) : null),
      el("td", {}, spark),
      el("td", { class: "num" }, j.epsilon == null ? "–" : eps(j.epsilon),
        j.max_epsilon ? el("div", { class: "sub", text: "budget " + j.max_epsilon }) : null),
      el("td", { text: when(j.created_at) }));
  }), "jobs-empty");
  for (const [c, j] of sparks) drawSparkline(c, j.accuracy, j.target_accuracy);

  $("participants-line").textContent = p.connected == null
    ? "This coordinator is a follower: it relays task streams to the leader" + (p.connected_known_by ? ", " + p.connected_known_by : "") + ", whose page shows who is connected."
    : p.registered + " registered, " + p.connected + " connected to the cluster now.";
  fillTable("regions", p.regions.map(r => el("tr", { "data-region": r.region },
    el("td", {}, el("b", { text: r.region })),
    el("td", { class: "num", text: num(r.registered) }),
    el("td", { class: "num", text: r.connected == null ? "–" : num(r.connected) }),
    el("td", { class: "num", text: num(r.organizations) }),
    el("td", { class: "num", text: num(r.examples) }))), "regions-empty");
}

function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

function shorten(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

// ---- a job -----------------------------------------------------------------

let lastJob = null;
// The round history lists the latest ROUNDS_FOLDED attempts until asked
// for all that the coordinator sent.
const ROUNDS_FOLDED = 20;
let showAllRounds = false;

function renderJob(v) {
  lastJob = v;
  $("content").hidden = false;
  setAnswered(v);
  const j = v.job;
  document.title = "Accord · " + (j.name || j.id);
  $("crumb-job").textContent = j.name ? j.name + " (" + j.id + ")" : j.id;
  $("job-name").textContent = j.name || j.id;
  $("job-status").replaceWith(Object.assign(badge(j.status), { id: "job-status" }));
  $("job-meta").textContent = [j.id, j.model + " on " + j.dataset,
    "submitted by " + (j.submitted_by || "?") + (j.organization ? " of " + j.organization : ""),
    "created " + when(j.created_at), j.finished_at ? "finished " + when(j.finished_at) : null,
    j.reason ? "“" + j.reason + "”" : null].filter(Boolean).join(" · ");

  const target = j.target_accuracy ? "target " + pct(j.target_accuracy, 1) + (j.target_reached_at_round ? ", reached at round " + j.target_reached_at_round : "") : "no target: runs every round";
  $("cards").replaceChildren(
    card("Rounds committed", el("span", {}, String(j.rounds_committed), el("small", { text: " / " + j.rounds_limit })),
      j.open_round ? "round " + j.open_round + " open" : plural(j.attempts, "attempt") + ", " + j.aborted + " aborted"),
    card("Last accuracy", pct(j.last_accuracy, 2), target),
    card("Initial accuracy", pct(j.initial_accuracy, 2), "of the initial model"),
    card(el("span", {}, "Privacy ", el("span", { class: "nocase", text: "ε" })), j.epsilon == null ? "–" : eps(j.epsilon), j.epsilon == null ? "no differential privacy" : j.max_epsilon ? "budget " + j.max_epsilon : "no budget"),
    card("Training", v.strategy, "rule " + v.aggregation + " · " + (v.secure_aggregation === "none" ? "no secure aggregation" : v.secure_aggregation) +
      " · " + v.participants_per_round + " per round, " + plural(v.local_epochs, "local epoch")));

  const fresh = progressBar(j.progress, j.status, true);
  $("progress-bar").parentElement.className = fresh.className;
  $("progress-bar").style.width = fresh.firstChild.style.width;
  $("progress-line").textContent = pct(j.progress, 0) + " · ends after " + j.rounds_limit + " rounds" +
    (j.target_accuracy ? " or at " + pct(j.target_accuracy, 1) + " accuracy, whichever comes first" : "");

  drawChart($("chart"), v.accuracy, j);

  const rounds = showAllRounds ? v.rounds : v.rounds.slice(0, ROUNDS_FOLDED);
  $("rounds-line").textContent = v.total_attempts > rounds.length
    ? "The latest " + rounds.length + " of " + v.total_attempts + " attempts, newest first."
    : plural(v.total_attempts, "attempt") + ", newest first.";
  const more = $("rounds-more");
  more.hidden = v.rounds.length <= ROUNDS_FOLDED;
  more.textContent = showAllRounds ? "Show the latest " + ROUNDS_FOLDED : "Show " + (v.rounds.length < v.total_attempts ? "the latest " : "all ") + v.rounds.length;
  fillTable("rounds", rounds.map(r => el("tr", { "data-round": r.number, "data-status": r.status },
    el("td", { class: "num" }, el("b", { text: String(r.number) })),
    el("td", { class: "num", text: String(r.attempt) }),
    el("td", {}, badge(r.status)),
    el("td", { class: "num", text: String(r.cohort) }),
    el("td", { class: "num", text: r.status === "COMMITTED" ? String(r.contributors) : "–" }),
    el("td", { class: "num", text: r.examples ? num(r.examples) : "–" }),
    el("td", { class: "num", text: pct(r.accuracy, 2) }),
    el("td", { class: "num", text: r.loss == null ? "–" : r.loss.toFixed(4) }),
    el("td", { class: "num", text: eps(r.epsilon) }),
    el("td", { class: "num", text: duration(r.duration_ms) }),
    el("td", { text: r.closed_at ? when(r.closed_at) : "deadline " + when(r.deadline) }),
    el("td", { class: "reason", title: r.reason || r.digest || "" },
      r.reason ? r.reason : r.digest ? el("span", { class: "mono", text: r.digest.slice(0, 16) + "…" }) : "–"))), "rounds-empty");

  $("raft-line").textContent = raftLine(v);
  $("member-chips").replaceChildren(...v.members.map(m => el("div", { class: "chip", "data-name": m.name },
    el("span", { class: "state " + m.gossip }), el("span", { class: "name", text: m.name }),
    el("span", { class: "sub", text: m.organization || "" }), badge(m.raft_role))));
}

// ---- charts ----------------------------------------------------------------

const COLORS = { series: "#1d4ed8", fill: "rgba(29, 78, 216, 0.08)", target: "#15803d", grid: "#e9ecf0", axis: "#9aa5b1", text: "#52606d" };

// prepare sizes a canvas to its CSS box at the device's pixel ratio.
function prepare(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || Number(canvas.getAttribute("width")), h = canvas.clientHeight || Number(canvas.getAttribute("height"));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

// niceStep is a round step (1, 2 or 5 × 10^k) that cuts span in about n.
function niceStep(span, n) {
  const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

function drawSparkline(canvas, points, target) {
  const { ctx, w, h } = prepare(canvas);
  if (!points || points.length === 0) {
    ctx.fillStyle = COLORS.axis; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
    ctx.fillText("no evaluation yet", 0, h / 2);
    return;
  }
  const x0 = points[0].round, x1 = Math.max(points[points.length - 1].round, x0 + 1);
  let lo = Math.min(...points.map(p => p.accuracy)), hi = Math.max(...points.map(p => p.accuracy), target || 0);
  if (hi - lo < 0.05) lo = Math.max(0, hi - 0.05);
  const X = r => 2 + (w - 4) * (r - x0) / (x1 - x0), Y = a => h - 3 - (h - 6) * (a - lo) / (hi - lo || 1);
  if (target) {
    ctx.strokeStyle = COLORS.target; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, Y(target)); ctx.lineTo(w, Y(target)); ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.strokeStyle = COLORS.series; ctx.lineWidth = 1.6; ctx.lineJoin = "round";
  ctx.beginPath();
  points.forEach((p, i) => i ? ctx.lineTo(X(p.round), Y(p.accuracy)) : ctx.moveTo(X(p.round), Y(p.accuracy)));
  ctx.stroke();
  const last = points[points.length - 1];
  ctx.fillStyle = COLORS.series; ctx.beginPath(); ctx.arc(X(last.round), Y(last.accuracy), 2.5, 0, 2 * Math.PI); ctx.fill();
}

let hover = null; // the round under the mouse on the job chart

function drawChart(canvas, points, job) {
  const { ctx, w, h } = prepare(canvas);
  const m = { left: 64, right: 24, top: 18, bottom: 50 };
  const pw = w - m.left - m.right, ph = h - m.top - m.bottom;
  const font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  ctx.font = font;

  // Axes' ranges: rounds 0 … the last round (with a little room for the
  // next ones while the job runs, never past its round limit); accuracy
  // from a round tenth below the lowest point to 100%.
  const lastRound = points.length ? points[points.length - 1].round : 0;
  const running = job.status === "RUNNING" || job.status === "PENDING_APPROVAL";
  const xMax = Math.max(1, running ? Math.min(Math.max(job.rounds_limit, lastRound), Math.max(lastRound + 1, Math.ceil(lastRound * 1.2))) : lastRound);
  const accs = points.map(p => p.accuracy).concat(job.target_accuracy ? [job.target_accuracy] : []);
  const yMin = accs.length ? Math.max(0, Math.floor((Math.min(...accs) - 0.02) * 10) / 10) : 0, yMax = 1;
  const X = r => m.left + pw * r / xMax, Y = a => m.top + ph * (1 - (a - yMin) / (yMax - yMin));

  // Grid and y ticks.
  const yStep = niceStep(yMax - yMin, 5);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let a = yMin; a <= yMax + 1e-9; a += yStep) {
    ctx.strokeStyle = COLORS.grid; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(m.left, Math.round(Y(a)) + 0.5); ctx.lineTo(m.left + pw, Math.round(Y(a)) + 0.5); ctx.stroke();
    ctx.fillStyle = COLORS.text; ctx.fillText(Math.round(a * 100) + "%", m.left - 8, Y(a));
  }
  // x ticks.
  const xStep = Math.max(1, niceStep(xMax, Math.max(2, Math.floor(pw / 70))));
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let r = 0; r <= xMax + 1e-9; r += xStep) {
    ctx.strokeStyle = COLORS.axis;
    ctx.beginPath(); ctx.moveTo(Math.round(X(r)) + 0.5, m.top + ph); ctx.lineTo(Math.round(X(r)) + 0.5, m.top + ph + 5); ctx.stroke();
    ctx.fillStyle = COLORS.text; ctx.fillText(String(Math.round(r)), X(r), m.top + ph + 8);
  }
  // Axes.
  ctx.strokeStyle = COLORS.axis; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(m.left + 0.5, m.top); ctx.lineTo(m.left + 0.5, m.top + ph + 0.5); ctx.lineTo(m.left + pw, m.top + ph + 0.5); ctx.stroke();
  // Axis titles.
  ctx.fillStyle = COLORS.text; ctx.font = "600 12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  ctx.textAlign = "center"; ctx.textBaseline = "bottom";
  ctx.fillText("Round", m.left + pw / 2, h - 6);
  ctx.save(); ctx.translate(16, m.top + ph / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle";
  ctx.fillText("Federated accuracy", 0, 0); ctx.restore();
  ctx.font = font;

  // The target.
  if (job.target_accuracy) {
    const y = Y(job.target_accuracy);
    ctx.strokeStyle = COLORS.target; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(m.left, y); ctx.lineTo(m.left + pw, y); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = COLORS.target; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillText("target " + pct(job.target_accuracy, 1), m.left + 8, y - 4);
  }

  if (points.length === 0) {
    ctx.fillStyle = COLORS.axis; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText("No round has been evaluated yet", m.left + pw / 2, m.top + ph / 2);
    return;
  }
  // The series: area, line, points.
  ctx.beginPath();
  ctx.moveTo(X(points[0].round), Y(yMin));
  for (const p of points) ctx.lineTo(X(p.round), Y(p.accuracy));
  ctx.lineTo(X(lastRound), Y(yMin)); ctx.closePath();
  ctx.fillStyle = COLORS.fill; ctx.fill();
  ctx.strokeStyle = COLORS.series; ctx.lineWidth = 2.2; ctx.lineJoin = "round";
  ctx.beginPath();
  points.forEach((p, i) => i ? ctx.lineTo(X(p.round), Y(p.accuracy)) : ctx.moveTo(X(p.round), Y(p.accuracy)));
  ctx.stroke();
  if (points.length <= 80) {
    for (const p of points) {
      ctx.beginPath(); ctx.arc(X(p.round), Y(p.accuracy), 3.5, 0, 2 * Math.PI);
      ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = COLORS.series; ctx.lineWidth = 2; ctx.stroke();
    }
  }
  // The last value, or the round under the mouse.
  const show = points.find(p => p.round === hover) || points[points.length - 1];
  const sx = X(show.round), sy = Y(show.accuracy);
  if (hover != null) {
    ctx.strokeStyle = COLORS.axis; ctx.setLineDash([2, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(sx, m.top); ctx.lineTo(sx, m.top + ph); ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.beginPath(); ctx.arc(sx, sy, 5, 0, 2 * Math.PI); ctx.fillStyle = COLORS.series; ctx.fill();
  const label = (show.round === 0 ? "initial model" : "round " + show.round) + ": " + pct(show.accuracy, 2);
  const tw = ctx.measureText(label).width + 14;
  let lx = Math.min(Math.max(sx - tw / 2, m.left + 2), m.left + pw - tw - 2), ly = sy - 34;
  if (ly < m.top) ly = sy + 12;
  ctx.fillStyle = "rgba(17, 24, 39, 0.88)";
  roundRect(ctx, lx, ly, tw, 22, 5); ctx.fill();
  ctx.fillStyle = "#fff"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
  ctx.fillText(label, lx + 7, ly + 11);

  canvas.onmousemove = e => {
    const r = canvas.getBoundingClientRect();
    const round = Math.round((e.clientX - r.left - m.left) / pw * xMax);
    const near = points.reduce((b, p) => Math.abs(p.round - round) < Math.abs(b.round - round) ? p : b, points[0]);
    if (near.round !== hover) { hover = near.round; drawChart(canvas, points, job); }
  };
  canvas.onmouseleave = () => { hover = null; drawChart(canvas, points, job); };
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y); ctx.arcTo(x + w, y, x + w, y + h, r); ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r); ctx.arcTo(x, y, x + w, y, r); ctx.closePath();
}

// ---- start -----------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "job") {
    const id = decodeURIComponent(location.pathname.replace(/^\/jobs\//, "").replace(/\/$/, ""));
    const api = "/api/jobs/" + encodeURIComponent(id);
    $("json-link").href = api;
    $("crumb-job").textContent = id;
    window.addEventListener("resize", () => { if (lastJob) drawChart($("chart"), lastJob.accuracy, lastJob.job); });
    $("rounds-more").addEventListener("click", () => { showAllRounds = !showAllRounds; if (lastJob) renderJob(lastJob); });
    poll(api, renderJob);
  } else {
    poll("/api/status", renderOverview);
  }
});
