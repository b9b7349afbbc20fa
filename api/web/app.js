// niteru's web page: the catalog grid, similar products with their route and scores, search by photo
// or text. Plain DOM calls against the JSON API; text goes in with textContent, never as HTML.
"use strict";

const PAGE = 48;
const K = 12;
const state = { category: null, offset: 0, chosen: null };
const $ = (id) => document.getElementById(id);

function apiKey() {
  return sessionStorage.getItem("niteru-api-key") || "";
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey()) h["X-API-Key"] = apiKey();
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
}

// A stored http(s) image is shown from its own host with a plain <img src>: the API key never goes
// there. A catalog image is served by the API: with a key it is fetched with it (an <img src> cannot send
// headers) and shown as a blob URL, and that fetch never follows a redirect, so the key stays here.
function setImage(img, item) {
  const url = `/v1/products/${encodeURIComponent(item.product_id)}/image`;
  img.alt = "";
  img.loading = "lazy";
  if (/^https?:\/\//i.test(item.image || "")) {
    img.referrerPolicy = "no-referrer";
    img.src = item.image;
    return;
  }
  if (!apiKey()) {
    img.src = url;
    return;
  }
  fetch(url, { headers: headers(), redirect: "manual" })
    .then((r) => (r.ok ? r.blob() : null))
    .then((blob) => { if (blob) img.src = URL.createObjectURL(blob); });
}

function fmt(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(3);
}

function card(item, onClick) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.productId = item.product_id;
  const img = document.createElement("img");
  setImage(img, item);
  const title = document.createElement("h3");
  title.textContent = item.title;
  title.title = item.title;
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent = [item.category, item.subcategory, item.shop_id].filter(Boolean).join(" · ");
  el.append(img, title, meta);
  if (item.score !== undefined) {
    const scores = document.createElement("p");
    scores.className = "scores";
    const e = item.explain;
    scores.textContent = e
      ? `fused ${fmt(e.fused_score)} · image ${fmt(e.image_score)} · text ${fmt(e.text_score)}` + (e.joint_score == null ? "" : ` · joint ${fmt(e.joint_score)}`)
      : `score ${fmt(item.score)}`;
    el.append(scores);
  }
  if (onClick) el.addEventListener("click", () => onClick(item));
  return el;
}

function renderCategories(categories, total) {
  const nav = $("categories");
  nav.replaceChildren();
  const all = Object.values(categories).reduce((a, b) => a + b, 0);
  const entries = [[null, all], ...Object.entries(categories)];
  for (const [name, count] of entries) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.category = name || "";
    b.textContent = `${name || "all"} (${count})`;
    b.setAttribute("aria-pressed", String(name === state.category));
    b.addEventListener("click", () => { state.category = name; loadCatalog(true); });
    nav.append(b);
  }
  $("catalog-count").textContent = `(${total})`;
}

async function loadCatalog(reset) {
  if (reset) { state.offset = 0; $("catalog-grid").replaceChildren(); }
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if (state.category) params.set("category", state.category);
  try {
    const page = await api(`/v1/products?${params}`);
    renderCategories(page.categories, page.total);
    for (const item of page.items) $("catalog-grid").append(card(item, showSimilar));
    state.offset += page.items.length;
    $("more").hidden = state.offset >= page.total;
    status("");
  } catch (err) {
    status(`Could not load the catalog: ${err.message}`, true);
  }
}

async function showSimilar(item) {
  state.chosen = item;
  $("detail").hidden = false;
  $("chosen").replaceChildren(...card(item).childNodes);
  $("similar").replaceChildren();
  $("route").replaceChildren();
  status("Finding similar products…");
  const params = new URLSearchParams({ k: K, mode: $("mode").value, explain: "true" });
  try {
    const result = await api(`/v1/products/${encodeURIComponent(item.product_id)}/similar?${params}`);
    const r = result.route;
    const weights = Object.entries(result.weights).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
    const rows = [
      ["mode", result.mode],
      ["route", `${r.source}${r.category ? ` → ${r.category}` : ""}${r.probability ? ` (p=${fmt(r.probability)})` : ""}`],
      ["weights", weights],
      ["fusion", result.fusion],
    ];
    if (r.table) rows.push(["table", `${r.table}${r.table_version ? ` ${r.table_version}` : ""}${r.basis ? ` (${r.basis})` : ""}`]);
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dd.dataset.field = k;
      $("route").append(dt, dd);
    }
    for (const m of result.items) $("similar").append(card(m, showSimilar));
    status(`${result.items.length} similar products`);
  } catch (err) {
    status(`Could not find similar products: ${err.message}`, true);
  }
  $("detail").scrollIntoView({ behavior: "smooth" });
}

function showResults(title, items) {
  $("results").hidden = false;
  $("results-title").textContent = title;
  $("results-grid").replaceChildren(...items.map((m) => card(m, showSimilar)));
  status(`${items.length} products`);
  $("results").scrollIntoView({ behavior: "smooth" });
}

async function searchPhoto(file) {
  const form = new FormData();
  form.append("file", file);
  const params = new URLSearchParams({ k: K });
  if (state.category) params.set("category", state.category);
  status("Looking at the photo…");
  try {
    const result = await api(`/v1/search/image?${params}`, { method: "POST", body: form });
    showResults(`Looks like ${file.name}`, result.items);
  } catch (err) {
    status(`Photo search failed: ${err.message}`, true);
  }
}

async function searchText(text) {
  status("Searching…");
  try {
    const body = JSON.stringify({ text, k: K, category: state.category });
    const result = await api("/v1/search/text", {
      method: "POST", body, headers: { "Content-Type": "application/json" },
    });
    showResults(`Matching “${text}”`, result.items);
  } catch (err) {
    status(`Text search failed: ${err.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => {
    sessionStorage.setItem("niteru-api-key", e.target.value.trim());
    loadCatalog(true);
  });
  $("text-search").addEventListener("submit", (e) => { e.preventDefault(); searchText($("q").value.trim()); });
  $("photo").addEventListener("change", (e) => { if (e.target.files.length) searchPhoto(e.target.files[0]); });
  $("mode").addEventListener("change", () => { if (state.chosen) showSimilar(state.chosen); });
  $("close-detail").addEventListener("click", () => { $("detail").hidden = true; state.chosen = null; });
  $("more").addEventListener("click", () => loadCatalog(false));
  loadCatalog(true);
});
