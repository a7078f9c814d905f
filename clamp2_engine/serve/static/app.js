"use strict";
// The search page: plain JavaScript over the JSON API; no build step, no network but this server.
const $ = (id) => document.getElementById(id);
// the piece view's facts: the words people use for each field; fields for machines stay out
const FACT_LABELS = { source: "file", work_title: "work", titles: "also titled", seconds: "length (s)", genres: "genre" };
const HIDDEN_FACTS = new Set(["key_sharps", "key_fifths", "unit", "unit_hash", "unit_parts", "piece_id"]);
const key = () => localStorage.getItem("clamp2-api-key");

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key()) headers["X-API-Key"] = key();
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) {
    const given = prompt("API key for this server");
    if (given) { localStorage.setItem("clamp2-api-key", given); return api(path, options); }
  }
  return res;
}

function text(tag, cls, value) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  el.textContent = value;
  return el;
}

async function loadScore(id, holder) {
  const res = await api(`/pieces/${encodeURIComponent(id)}/score.svg`);
  if (!res.ok) { holder.append(text("p", "meta", "no score: " + ((await res.json()).error || res.status))); return; }
  const doc = new DOMParser().parseFromString(await res.text(), "image/svg+xml");
  const svg = doc.documentElement;
  if (svg && svg.nodeName.toLowerCase() === "svg") {
    svg.querySelectorAll("script, foreignObject").forEach((n) => n.remove());
    holder.append(document.importNode(svg, true));
  }
}

async function downloadMidi(id, name) {
  const res = await api(`/pieces/${encodeURIComponent(id)}/midi`);
  if (!res.ok) { $("status").textContent = "no MIDI: " + ((await res.json()).error || res.status); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name + ".mid" });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Listening: one piece sounds at a time; while it plays, its engraved notes and measure light up
// (Verovio's timemap of the page) and the position shows beside the button.
let audioState = "";  // "ok", or why this server cannot play pieces
let playing = null;   // the <audio> element sounding now

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function follow(el, events, ms) {
  const svg = el;  // a card (its first page) or the piece view (every page)
  const sounding = new Set();
  let measure = null;
  for (const e of events) {
    if (e.ms > ms) break;
    for (const id of e.on) {
      const node = svg.querySelector(`[id="${CSS.escape(id)}"]`);
      if (node && node.classList.contains("measure")) measure = id; else sounding.add(id);
    }
    for (const id of e.off) sounding.delete(id);
  }
  if (measure) sounding.add(measure);
  svg.querySelectorAll(".playing").forEach((n) => { if (!sounding.has(n.id)) n.classList.remove("playing"); });
  for (const id of sounding) {
    const node = svg.querySelector(`[id="${CSS.escape(id)}"]`);
    if (!node) continue;
    const fresh = !node.classList.contains("playing");
    node.classList.add("playing");
    if (fresh && id === measure && el.classList.contains("piece-view")) {  // the page being played in view
      node.closest(".page")?.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  }
}

function player(hit, el) {
  const box = document.createElement("div");
  box.className = "player";
  const button = text("button", "play", "▶ Play");
  button.type = "button";
  const position = text("span", "position", "0:00");
  const audio = document.createElement("audio");
  audio.preload = "none";
  let events = [];
  button.addEventListener("click", async () => {
    if (!audio.src) {
      button.disabled = true;
      const res = await api(`/pieces/${encodeURIComponent(hit.id)}/audio`);
      button.disabled = false;
      if (!res.ok) { position.textContent = "cannot play: " + ((await res.json()).error || res.status); return; }
      audio.src = URL.createObjectURL(await res.blob());
      const map = await api(`/pieces/${encodeURIComponent(hit.id)}/timemap.json`);
      if (map.ok) events = await map.json();
    }
    if (audio.paused) audio.play(); else audio.pause();
  });
  audio.addEventListener("play", () => {
    if (playing && playing !== audio) playing.pause();
    playing = audio;
    button.textContent = "❚❚ Pause";
  });
  audio.addEventListener("pause", () => { button.textContent = "▶ Play"; });
  audio.addEventListener("timeupdate", () => {
    position.textContent = `${clock(audio.currentTime)} / ${clock(audio.duration)}`;
    follow(el, events, audio.currentTime * 1000);
  });
  audio.addEventListener("ended", () => follow(el, [], 0));
  box.append(button, position, audio);
  return box;
}

function card(hit) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.id = hit.id;
  const title = text("a", "", hit.title || hit.source || hit.id);
  title.href = toUrl(Object.assign(stateFromControls(), { piece: hit.id }));
  title.addEventListener("click", (e) => { e.preventDefault(); go(Object.assign(fromUrl(), { piece: hit.id })); });
  const heading = document.createElement("h2");
  heading.append(title);
  el.append(heading);
  el.append(text("p", "meta", [hit.composer, `score ${hit.score.toFixed(3)}`, hit.modality, hit.source].filter(Boolean).join(" · ")));
  const score = document.createElement("div");
  score.className = "score";
  el.append(score);
  const actions = document.createElement("div");
  actions.className = "actions";
  const like = text("button", "", "More like this");
  like.type = "button";
  like.addEventListener("click", () => go(stateFromControls({ q: "", like: hit.id, likeTitle: `“${hit.title || hit.id}”` })));
  const midi = text("a", "", "MIDI");
  midi.href = "#";
  midi.addEventListener("click", (e) => { e.preventDefault(); downloadMidi(hit.id, hit.title || "piece"); });
  actions.append(like, midi);
  if (audioState === "ok") actions.prepend(player(hit, el));
  el.append(actions);
  loadScore(hit.id, score);
  return el;
}

// The URL is the state: query, mode, modality, composer, genre, varied and like are in the address, a
// search is a history entry (Back works), and opening such a link reproduces its results.
const FIELDS = ["q", "mode", "modality", "composer", "genre", "varied", "like", "piece"];

function stateFromControls(extra = {}) {
  const state = {
    q: $("q").value.trim(), mode: $("mode").value, modality: $("modality").value,
    composer: $("composer").value, genre: $("genre").value, varied: $("diverse").checked ? "1" : "",
    like: "", piece: "",
  };
  return Object.assign(state, extra);
}

function toUrl(state) {
  const params = new URLSearchParams();
  for (const f of FIELDS) {
    const v = state[f];
    if (v && !(f === "mode" && v === "hybrid") && !(f === "modality" && v === "any")) params.set(f, v);
  }
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

function fromUrl() {
  const params = new URLSearchParams(location.search);
  return Object.fromEntries(FIELDS.map((f) => [f, params.get(f) || ""]));
}

function setSelect(id, value) {
  const sel = $(id);
  if (value && ![...sel.options].some((o) => o.value === value)) sel.append(new Option(value, value));
  sel.value = value;
}

function showState(state) {
  $("q").value = state.q;
  $("mode").value = state.mode || "hybrid";
  $("modality").value = state.modality || "any";
  setSelect("composer", state.composer);
  setSelect("genre", state.genre);
  $("diverse").checked = state.varied === "1";
}

function go(state, push = true) {
  if (push && toUrl(state) !== location.pathname + location.search) history.pushState(state, "", toUrl(state));
  show(state);
}

// What a state shows: the piece view over the results when it names a piece, else the results.
function show(state) {
  if (state.piece) { openPiece(state.piece); if ((state.q || state.like) && !$("results").childElementCount) run(state); return; }
  $("piece").hidden = true;
  $("piece").replaceChildren();
  if (state.q || state.like) run(state);
}

function download(path, name) {
  return async () => {
    const res = await api(path);
    if (!res.ok) { $("status").textContent = "cannot download: " + ((await res.json()).error || res.status); return; }
    const url = URL.createObjectURL(await res.blob());
    Object.assign(document.createElement("a"), { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
}

async function openPiece(id) {
  const view = $("piece");
  view.hidden = false;
  view.replaceChildren(text("p", "meta", "opening the piece…"));
  const res = await api(`/pieces/${encodeURIComponent(id)}`);
  const data = await res.json();
  if (!res.ok) { view.replaceChildren(text("p", "meta", data.error || `error ${res.status}`)); return; }
  const p = data.payload;
  const name = p.title || p.source || id;
  const head = document.createElement("div");
  head.className = "piece-head";
  head.append(text("h2", "", name));
  const close = text("button", "close", "Close");
  close.type = "button";
  close.addEventListener("click", () => go(Object.assign(fromUrl(), { piece: "" })));
  head.append(close);
  const facts = document.createElement("dl");
  const meta = Object.assign({ composer: p.composer, source: p.source }, p.metadata || {});
  for (const [k, v] of Object.entries(meta)) {
    if (v === null || v === undefined || v === "" || typeof v === "object" && !Array.isArray(v)) continue;
    if (HIDDEN_FACTS.has(k) || (k === "title" && v === name)) continue;  // the heading says it already
    const label = FACT_LABELS[k] || k.replace(/_/g, " ");
    facts.append(text("dt", "", label), text("dd", "", Array.isArray(v) ? v.join(", ") : String(v)));
  }
  const summaries = [p.summary_en, p.summary_nen].flat().filter((t) => typeof t === "string" && t.trim());
  const actions = document.createElement("div");
  actions.className = "actions";
  const like = text("button", "", "More like this");
  like.type = "button";
  like.addEventListener("click", () => go(Object.assign(stateFromControls({ q: "", like: id, likeTitle: `“${name}”` }), { piece: "" })));
  const midi = text("button", "secondary", "MIDI");
  midi.type = "button";
  midi.addEventListener("click", download(`/pieces/${encodeURIComponent(id)}/midi`, `${name}.mid`));
  actions.append(like, midi);
  if (audioState === "ok") {
    const mp3 = text("button", "secondary", "Audio");
    mp3.type = "button";
    mp3.addEventListener("click", download(`/pieces/${encodeURIComponent(id)}/audio`, `${name}.mp3`));
    actions.append(mp3);
  }
  const link = text("a", "permalink", "Link to this piece");
  link.href = toUrl({ piece: id });
  actions.append(link);
  const pages = document.createElement("div");
  pages.className = "score pages";
  view.replaceChildren(head, facts, ...summaries.map((t) => text("p", "summary", t)), actions, pages);
  view.classList.add("piece-view");
  if (audioState === "ok") actions.prepend(player({ id }, view));
  view.scrollIntoView({ block: "start" });
  const got = await api(`/pieces/${encodeURIComponent(id)}/pages.json`);
  if (!got.ok) { pages.append(text("p", "meta", "no score: " + ((await got.json()).error || got.status))); return; }
  const engraved = await got.json();
  engraved.pages.forEach((svgText, n) => {
    const page = document.createElement("div");
    page.className = "page";
    page.setAttribute("aria-label", `page ${n + 1}`);
    const doc = new DOMParser().parseFromString(svgText, "image/svg+xml");
    const svg = doc.documentElement;
    if (svg && svg.nodeName.toLowerCase() === "svg") {
      svg.querySelectorAll("script, foreignObject").forEach((x) => x.remove());
      page.append(document.importNode(svg, true));
    }
    pages.append(page);
  });
  if (engraved.total > engraved.pages.length) pages.append(text("p", "meta", `the first ${engraved.pages.length} of ${engraved.total} pages`));
}

async function run(state) {
  const filters = [];
  if (state.composer) filters.push(`composer==${state.composer}`);
  if (state.genre) filters.push(`genres==${state.genre}`);
  const body = { k: 12, modality: state.modality || "any", mode: state.mode || "hybrid", filters };
  if (state.like) body.like = [state.like];
  else body.query = state.q;
  if (!state.like && state.varied === "1") body.diverse = true;
  let likeName = state.likeTitle;
  if (state.like && !likeName) {  // a link or a reload: name the piece from the server
    const found = await api(`/pieces/${encodeURIComponent(state.like)}`);
    if (found.ok) {
      const piece = (await found.json()).payload || {};
      likeName = `“${piece.title || piece.source || state.like}”`;
    }
  }
  const label = state.like ? `pieces like ${likeName || "this one"}` : `“${state.q}”`;
  $("status").textContent = `searching ${label}…`;
  const res = await api("/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await res.json();
  const results = $("results");
  results.replaceChildren();
  if (!res.ok) { $("status").textContent = data.error || `error ${res.status}`; return; }
  const said = data.hits.length ? `${data.hits.length} pieces for ${label}` : `no hits${data.why ? ": " + data.why : ""}`;
  $("status").textContent = [said, ...(data.notices || [])].join(" · ");  // e.g. "… has no mtf vectors: matched by words alone"
  data.hits.forEach((h) => results.append(card(h)));
}

async function fillFilters() {
  const health = await api("/healthz");
  if (!health.ok) return;
  const about = await health.json();
  audioState = about.audio || "";
  if (audioState && audioState !== "ok") $("audio-note").textContent = `no player: ${audioState}`;
  const info = await (await api(`/collections/${encodeURIComponent(about.collection)}`)).json();
  for (const [field, id] of [["composer", "composer"], ["genres", "genre"]]) {
    const chosen = $(id).value;
    for (const f of (info.facets || {})[field] || []) {
      if (f.value !== chosen) $(id).append(new Option(`${f.value} (${f.count})`, f.value));
      else [...$(id).options].find((o) => o.value === chosen).textContent = `${f.value} (${f.count})`;
    }
  }
}

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const state = stateFromControls();
  if (state.q) go(state);
});
for (const id of ["mode", "modality", "composer", "genre", "diverse"]) {
  $(id).addEventListener("change", () => { const state = stateFromControls(); if (state.q) go(state); });
}
window.addEventListener("popstate", () => { const state = fromUrl(); showState(state); show(state); });

const initial = fromUrl();
showState(initial);
fillFilters().catch(() => {}).finally(() => show(initial));
