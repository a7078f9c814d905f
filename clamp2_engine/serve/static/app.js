"use strict";
// The search page: plain JavaScript over the JSON API; no build step, no network but this server.
const $ = (id) => document.getElementById(id);
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

function card(hit) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.id = hit.id;
  el.append(text("h2", "", hit.title || hit.source || hit.id));
  el.append(text("p", "meta", [hit.composer, `score ${hit.score.toFixed(3)}`, hit.modality, hit.source].filter(Boolean).join(" · ")));
  const score = document.createElement("div");
  score.className = "score";
  el.append(score);
  const actions = document.createElement("div");
  actions.className = "actions";
  const like = text("button", "", "More like this");
  like.type = "button";
  like.addEventListener("click", () => run({ like: [hit.id] }, `like “${hit.title || hit.id}”`));
  const midi = text("a", "", "MIDI");
  midi.href = "#";
  midi.addEventListener("click", (e) => { e.preventDefault(); downloadMidi(hit.id, hit.title || "piece"); });
  actions.append(like, midi);
  el.append(actions);
  loadScore(hit.id, score);
  return el;
}

async function run(extra, label) {
  const filters = [];
  if ($("composer").value) filters.push(`composer==${$("composer").value}`);
  if ($("genre").value) filters.push(`genres==${$("genre").value}`);
  const body = Object.assign({ k: 12, modality: $("modality").value, mode: $("mode").value, filters }, extra);
  if (!body.like && $("diverse").checked) body.diverse = true;
  $("status").textContent = `searching ${label}…`;
  const res = await api("/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await res.json();
  const results = $("results");
  results.replaceChildren();
  if (!res.ok) { $("status").textContent = data.error || `error ${res.status}`; return; }
  $("status").textContent = data.hits.length ? `${data.hits.length} pieces for ${label}` : `no hits${data.why ? ": " + data.why : ""}`;
  data.hits.forEach((h) => results.append(card(h)));
}

async function fillFilters() {
  const health = await api("/healthz");
  if (!health.ok) return;
  const info = await (await api(`/collections/${encodeURIComponent((await health.json()).collection)}`)).json();
  for (const [field, id] of [["composer", "composer"], ["genres", "genre"]]) {
    for (const f of (info.facets || {})[field] || []) $(id).append(new Option(`${f.value} (${f.count})`, f.value));
  }
}

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (!q) return;
  history.replaceState(null, "", `/?q=${encodeURIComponent(q)}`);
  run({ query: q }, `“${q}”`);
});

fillFilters();
const initial = new URLSearchParams(location.search).get("q");
if (initial) { $("q").value = initial; run({ query: initial }, `“${initial}”`); }
