// The audit page: every text from the data goes in through textContent, never innerHTML, so QA text is shown as
// text. Verdicts are POSTed as JSON; the server appends them to OUT/audit/verdicts.jsonl before answering.
"use strict";

const state = { items: [], index: 0, done: 0, total: 0, otherShown: false, pending: 0, queue: Promise.resolve() };
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function load() {
  const response = await fetch("/api/state", { credentials: "same-origin" });
  if (!response.ok) { $("status").textContent = "could not load the sample: HTTP " + response.status; return; }
  const data = await response.json();
  Object.assign(state, { items: data.items, done: data.done, total: data.total });
  $("run").textContent = data.run + " \u00b7 seed " + data.seed + " \u00b7 " + data.total + " of " +
    data.population + " QA";
  show(data.resume);
}

function progress() {
  $("progress").textContent = state.done + " / " + state.total;
  $("bar-done").style.width = (state.total ? (100 * state.done / state.total) : 0) + "%";
  $("done-banner").hidden = !(state.total && state.done === state.total);
}

function show(index) {
  if (!state.items.length) { $("question").textContent = "This sample is empty."; return; }
  state.index = Math.max(0, Math.min(index, state.items.length - 1));
  state.otherShown = false;
  const item = state.items[state.index];
  $("task").textContent = item.task;
  $("format").textContent = item.answer_format;
  $("position").textContent = "item " + (state.index + 1);
  $("qa-id").textContent = "qa " + item.id;
  const doc = item.document || {};
  $("doc").textContent = (doc.file_name || item.doc_sha256) + (doc.title ? " \u2014 " + doc.title : "") +
    " \u00b7 segment pages " + item.segment_start + "\u2013" + item.segment_end;
  $("question").textContent = item.question;
  $("answer").textContent = item.answer;
  const list = $("answer-list");
  list.replaceChildren(...(item.answer_list || []).map((a) => el("li", a)));
  $("evidence").textContent = "Pages " + (item.evidence_pages || []).join(", ") +
    ((item.evidence_sources || []).length ? " (" + item.evidence_sources.join(", ") + ")" : "");
  $("evidence-description").textContent = item.evidence_description || "";
  showOutcomes(item.outcomes || {});
  showVerdict(item);
  $("note").value = item.note || "";
  progress();
  showPages(item);
}

function showOutcomes(outcomes) {
  const rows = Object.entries(outcomes).map(([key, value]) => {
    const tr = el("tr");
    tr.append(el("td", key), el("td", typeof value === "object" ? JSON.stringify(value) : value));
    return tr;
  });
  $("outcomes").replaceChildren(...rows);
  $("outcomes-box").hidden = rows.length === 0;
}

function showVerdict(item) {
  const tag = $("current");
  tag.textContent = item.verdict ? "\u2014 " + item.verdict : "";
  tag.className = "verdict-tag " + (item.verdict || "");
  document.querySelectorAll(".verdicts button").forEach((b) => {
    b.classList.toggle("chosen", b.dataset.verdict === item.verdict);
  });
}

function segmentPages(item) {
  const pages = [];
  for (let p = item.segment_start; p <= item.segment_end; p++) pages.push(p);
  return pages;
}

function showPages(item) {
  const evidence = item.evidence_pages || [];
  $("evidence-pages").replaceChildren(...evidence.map((p) => pageFigure(item, p, true)));
  $("other-pages").replaceChildren();
  const others = segmentPages(item).filter((p) => !evidence.includes(p));
  $("more").hidden = others.length === 0;
  $("more").textContent = "Show the segment's other pages (" + others.length + ")";
}

function showOtherPages() {
  const item = state.items[state.index];
  if (state.otherShown || !item) return;
  state.otherShown = true;
  const evidence = item.evidence_pages || [];
  const others = segmentPages(item).filter((p) => !evidence.includes(p));
  $("other-pages").replaceChildren(...others.map((p) => pageFigure(item, p, false)));
  $("more").hidden = true;
}

function pageFigure(item, page, isEvidence) {
  const figure = el("figure");
  figure.dataset.page = page;
  const caption = el("figcaption", "Page " + page + " ");
  if (isEvidence) caption.append(el("span", "evidence", "tag"));
  const holder = el("div", null, "page");
  const img = el("img");
  img.alt = "page " + page;
  img.loading = isEvidence ? "eager" : "lazy";
  img.src = "/api/page/" + item.index + "/" + page;
  img.onerror = () => holder.replaceChildren(el("div", "page " + page + ": no image", "missing"));
  holder.append(img);
  figure.append(caption, holder);
  highlight(item, page, holder, caption);
  return figure;
}

async function highlight(item, page, holder, caption) {
  const response = await fetch("/api/highlights/" + item.index + "/" + page, { credentials: "same-origin" });
  if (!response.ok) return;
  const data = await response.json();
  for (const [x0, y0, x1, y1] of data.boxes) {
    const box = el("div", null, "hl");
    box.style.left = (100 * x0) + "%";
    box.style.top = (100 * y0) + "%";
    box.style.width = (100 * (x1 - x0)) + "%";
    box.style.height = (100 * (y1 - y0)) + "%";
    holder.append(box);
  }
  const found = data.boxes.length ? "answer found in the text layer (" + data.boxes.length + (data.boxes.length === 1 ? " box)" : " boxes)") :
    "answer not found in the text layer";
  caption.append(el("span", " " + found, "small"));
}

function giveVerdict(verdict) {
  // Shown at once and the next QA opened; the POSTs go one after another, so quick key presses all land, in order.
  const item = state.items[state.index];
  if (!item) return;
  const before = { verdict: item.verdict, note: item.note };
  const note = $("note").value;
  Object.assign(item, { verdict: verdict, note: note });
  state.pending += 1;
  $("status").textContent = "saving\u2026";
  state.queue = state.queue.then(() => post(item, verdict, note, before));
  show(nextIndex());
}

async function post(item, verdict, note, before) {
  let response;
  try {
    response = await fetch("/api/verdict", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ index: item.index, qa_id: item.id, verdict: verdict, note: note }),
    });
  } catch (error) {
    response = { ok: false, status: "unreachable" };
  }
  state.pending -= 1;
  if (response.ok) {
    state.done = (await response.json()).done;
    $("status").textContent = state.pending ? "saving\u2026" : "saved: item " + (item.index + 1) + " " + verdict;
  } else {
    Object.assign(item, before);
    $("status").textContent = "NOT saved (HTTP " + response.status + "): item " + (item.index + 1) + "; give it again";
  }
  progress();
  if (state.items[state.index] === item) showVerdict(item);
}

function nextIndex() {
  const n = state.items.length;
  for (let step = 1; step <= n; step++) {
    const i = (state.index + step) % n;
    if (!state.items[i].verdict) return i;
  }
  return Math.min(state.index + 1, n - 1);
}

function onKey(event) {
  const typing = event.target && (event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT");
  if (typing) { if (event.key === "Escape") event.target.blur(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    c: () => giveVerdict("correct"), 1: () => giveVerdict("correct"),
    w: () => giveVerdict("wrong"), 2: () => giveVerdict("wrong"),
    u: () => giveVerdict("unclear"), 3: () => giveVerdict("unclear"),
    j: () => show(state.index + 1), ArrowRight: () => show(state.index + 1),
    k: () => show(state.index - 1), ArrowLeft: () => show(state.index - 1),
    o: showOtherPages, n: () => $("note").focus(),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".verdicts button").forEach((b) => {
    b.addEventListener("click", () => giveVerdict(b.dataset.verdict));
  });
  $("prev").addEventListener("click", () => show(state.index - 1));
  $("next").addEventListener("click", () => show(state.index + 1));
  $("more").addEventListener("click", showOtherPages);
  document.addEventListener("keydown", onKey);
  load();
});
