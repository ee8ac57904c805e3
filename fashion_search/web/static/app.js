// The search page: sends a photo, words, or both (or a catalog product) to the JSON API and
// shows, per garment found, an outline on the photo and a grid of similar products; for words
// alone, one grid. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    drop: $("drop"), pick: $("pick"), shoot: $("shoot"), file: $("file"), camera: $("camera"),
    category: $("category"), k: $("k"), sameClass: $("same-class"), filters: $("filters"),
    spinner: $("spinner"), statusText: $("status-text"), error: $("error"), notice: $("notice"),
    photo: $("photo"), photoImg: $("photo-img"), masks: $("photo-masks"), boxes: $("photo-boxes"),
    caption: $("photo-caption"), chips: $("garments"), results: $("results"),
    words: $("words"), text: $("text"), clearPhoto: $("clear-photo"),
  };
  const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#0fa5a5", "#c71585", "#808000"];
  const SVG = "http://www.w3.org/2000/svg";
  const MESSAGES = {
    upload_too_large: "That file is too large. Please use a smaller photo.",
    not_an_image: "That file is not a photo this site can read. Please use a JPEG, PNG or WebP image.",
    corrupt_image: "That image seems damaged and could not be read. Please try another photo.",
    too_many_pixels: "That image has too many pixels. Please use a smaller photo.",
    empty_file: "That file is empty. Please choose a photo.",
    unknown_product: "That product is no longer in the catalog.",
    unknown_category: "That category is not in the catalog.",
    text_search_unavailable: "This catalog cannot be searched by words yet.",
  };
  // Metadata filters the catalog allows: a picker per text column with few values, a range
  // per number column (from GET /api/filters); each contributes one condition.
  const MAX_PICKERS = 6;
  const filterControls = [];

  // Each search gets a number; answers to older searches that arrive late are dropped, so the
  // page always shows the last thing the shopper asked for.
  let searchSeq = 0;
  let photoUrl = null;
  let photoFile = null;  // the photo words refine, until "Words only"
  let focused = null;
  let lastQuery = null;  // re-runs the current search when an option changes

  // -- input ------------------------------------------------------------------------------------

  els.pick.addEventListener("click", () => els.file.click());
  els.shoot.addEventListener("click", () => els.camera.click());
  for (const input of [els.file, els.camera]) {
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) searchPhoto(input.files[0]);
      input.value = "";  // choosing the same file again searches again
    });
  }
  els.drop.addEventListener("dragover", (e) => { e.preventDefault(); els.drop.classList.add("dragging"); });
  els.drop.addEventListener("dragleave", () => els.drop.classList.remove("dragging"));
  els.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    els.drop.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) searchPhoto(file);
  });
  // A photo dropped anywhere else must not make the browser navigate away to it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("paste", (e) => {
    const items = e.clipboardData ? Array.from(e.clipboardData.items) : [];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); searchPhoto(item.getAsFile()); }
  });
  for (const control of [els.category, els.k, els.sameClass]) {
    control.addEventListener("change", () => { if (lastQuery) lastQuery(); });
  }

  function params() {
    const q = new URLSearchParams({ k: els.k.value, same_class: els.sameClass.checked ? "true" : "false" });
    if (els.category.value) q.set("category", els.category.value);
    const conditions = filterControls.map((c) => c()).filter(Boolean);
    if (conditions.length) q.set("filter", conditions.join(" and "));
    return q;
  }

  // A column name and a text value in the filter grammar (docs/filters.md).
  const column = (name) => "`" + name + "`";
  const quoted = (text) => '"' + text.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';

  function searchPhoto(file) {
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    photoFile = file;
    els.clearPhoto.hidden = false;
    lastQuery = () => {
      const body = new FormData();
      body.append("image", file, file.name || "pasted-photo.png");
      const words = els.text.value.trim();
      if (words) body.append("text", words);
      const caption = `Your photo${file.name ? `: ${file.name}` : ""}${words ? `, “${words}”` : ""}`;
      return run(`/api/search?${params()}`, body, photoUrl, caption);
    };
    return lastQuery();
  }

  // Words alone search the catalog; with a photo chosen, they say how its garments should be.
  function searchWords() {
    const words = els.text.value.trim();
    if (photoFile) return searchPhoto(photoFile);
    if (!words) { showError("Type some words, or choose a photo."); return; }
    lastQuery = () => {
      const body = new FormData();
      body.append("text", words);
      return run(`/api/search?${params()}`, body, null, `“${words}”`);
    };
    return lastQuery();
  }

  els.words.addEventListener("submit", (e) => { e.preventDefault(); searchWords(); });
  els.clearPhoto.addEventListener("click", () => {
    photoFile = null;
    els.clearPhoto.hidden = true;
    els.photo.hidden = true;
    els.chips.hidden = true;
    if (els.text.value.trim()) searchWords();
  });

  function searchProduct(productId, label) {
    lastQuery = () => run(`/api/search/product/${encodeURIComponent(productId)}?${params()}`, null, null,
      `More like ${label}`);
    return lastQuery();
  }

  // -- searching --------------------------------------------------------------------------------

  async function run(url, body, imageUrl, caption) {
    const seq = ++searchSeq;
    setBusy(true);
    showError(null);
    els.notice.hidden = true;
    const started = performance.now();
    let response, data;
    try {
      response = await fetch(url, { method: "POST", body });
      data = await response.json().catch(() => null);
    } catch (err) {
      if (seq === searchSeq) { setBusy(false); showError("Could not reach the server. Check your connection and try again."); }
      return;
    }
    if (seq !== searchSeq) return;
    setBusy(false);
    if (!response.ok) {
      const code = data && data.error ? data.error.code : "";
      const message = MESSAGES[code] || (data && data.error && data.error.message) || `Search failed (HTTP ${response.status}).`;
      showError(message);
      return;
    }
    const elapsed = performance.now() - started;
    const timing = `searched in ${Math.round(elapsed)} ms (server ${Math.round(data.timings_ms.total || 0)} ms)`;
    if (data.results) {  // words alone
      renderProducts(data.results, caption);
      els.statusText.textContent = `${data.results.length} product${data.results.length === 1 ? "" : "s"} · ${timing}`;
      return;
    }
    render(data, imageUrl || data.query_image, caption);
    const garments = data.garments.length;
    els.statusText.textContent = `${garments} garment${garments === 1 ? "" : "s"} · ${timing}`;
  }

  function renderProducts(results, caption) {
    focused = null;
    els.photo.hidden = true;
    els.chips.hidden = true;
    const section = document.createElement("section");
    section.className = "garment-results";
    section.setAttribute("aria-label", `Products for ${caption}`);
    const heading = document.createElement("h2");
    heading.textContent = caption;
    section.append(heading);
    if (!results.length) {
      const none = document.createElement("p");
      none.className = "no-results";
      none.textContent = "No products match these words.";
      section.append(none);
    } else {
      const grid = document.createElement("ul");
      grid.className = "grid";
      for (const r of results) grid.append(card(r));
      section.append(grid);
    }
    els.results.replaceChildren(section);
  }

  function setBusy(busy) {
    els.spinner.hidden = !busy;
    if (busy) els.statusText.textContent = "Searching…";
    document.body.setAttribute("aria-busy", busy ? "true" : "false");
    els.pick.disabled = els.shoot.disabled = busy;
  }

  function showError(message) {
    els.error.hidden = !message;
    els.error.textContent = message || "";
    if (message) els.statusText.textContent = "";
  }

  // -- rendering --------------------------------------------------------------------------------

  function render(data, imageUrl, caption) {
    focused = null;
    const garments = data.garments;
    const wholeImage = garments.length === 1 && garments[0].label === "image";
    if (!garments.length || wholeImage) {
      els.notice.textContent = garments.length
        ? "No garment found in this photo: showing products like the whole image."
        : "No garment found in this photo.";
      els.notice.hidden = false;
    }
    els.caption.textContent = caption;
    els.photo.hidden = false;
    els.photoImg.alt = caption;
    els.photoImg.onload = () => drawOverlays(garments);
    els.photoImg.src = imageUrl;
    if (els.photoImg.complete && els.photoImg.naturalWidth) drawOverlays(garments);

    els.chips.replaceChildren();
    els.chips.hidden = garments.length < 2;
    if (garments.length > 1) {
      els.chips.append(chip("All garments", null, null));
      garments.forEach((g, i) => els.chips.append(chip(garmentName(g, i), COLOURS[i % COLOURS.length], i)));
    }

    els.results.replaceChildren(...garments.map((g, i) => garmentSection(g, i)));
    if (!garments.length) {
      const empty = document.createElement("div");
      empty.className = "empty-state";
      empty.textContent = "No results.";
      els.results.append(empty);
    }
    updateFocus();
  }

  // Folder-made names use underscores for spaces ("KnitWear___Cardigan").
  function prettyCategory(name) {
    return name.replace(/_+/g, " ").replace(/\s+/g, " ").trim();
  }

  function garmentName(g, i) {
    const label = g.label === "item" ? "item" : g.label === "image" ? "whole photo" : g.label;
    return `${i + 1}. ${label}`;
  }

  function chip(text, colour, index) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chip";
    button.dataset.index = index === null ? "all" : String(index);
    if (colour) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      button.append(swatch);
    }
    button.append(text);
    button.addEventListener("click", () => focusGarment(index));
    return button;
  }

  function focusGarment(index) {
    focused = index === focused ? null : index;
    updateFocus();
    if (focused !== null) els.results.focus({ preventScroll: true });
    if (focused !== null && window.matchMedia("(max-width: 760px)").matches) {
      els.results.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  function updateFocus() {
    for (const button of els.chips.querySelectorAll(".chip")) {
      const index = button.dataset.index === "all" ? null : Number(button.dataset.index);
      button.setAttribute("aria-pressed", String(index === focused));
    }
    els.results.querySelectorAll(".garment-results").forEach((section, i) => {
      section.hidden = focused !== null && i !== focused;
    });
    els.boxes.querySelectorAll("g.garment").forEach((group, i) => {
      group.style.opacity = focused === null || i === focused ? "1" : "0.35";
    });
  }

  function garmentSection(g, i) {
    const section = document.createElement("section");
    section.className = "garment-results";
    section.setAttribute("aria-label", `Products like garment ${garmentName(g, i)}`);
    const heading = document.createElement("h2");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[i % COLOURS.length];
    const small = document.createElement("small");
    small.textContent = `${g.results.length} product${g.results.length === 1 ? "" : "s"}`;
    heading.append(swatch, garmentName(g, i), " ", small);
    section.append(heading);
    if (!g.results.length) {
      const none = document.createElement("p");
      none.className = "no-results";
      none.textContent = els.category.value
        ? "No similar products in this category. Try “All categories”."
        : "No similar products in the catalog.";
      section.append(none);
      return section;
    }
    const grid = document.createElement("ul");
    grid.className = "grid";
    for (const r of g.results) grid.append(card(r));
    section.append(grid);
    return section;
  }

  function card(r) {
    const li = document.createElement("li");
    const article = document.createElement("article");
    article.className = "card result-card";
    const link = document.createElement("a");
    link.className = "thumb";
    link.href = r.image;
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    img.src = r.thumbnail;
    img.loading = "lazy";
    img.alt = `${r.metadata.productDisplayName || prettyCategory(r.category)} (product ${r.product_id})`;
    link.append(img);

    const body = document.createElement("div");
    body.className = "card-body";
    const title = document.createElement("h3");
    title.textContent = r.product_id;
    const category = document.createElement("p");
    category.className = "category";
    category.textContent = prettyCategory(r.category);
    const similarity = document.createElement("p");
    similarity.className = "similarity";
    const pct = Math.max(0, Math.min(100, Math.round(r.score * 100)));
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${pct}%`;
    bar.append(fill);
    similarity.append(bar, `${pct}% similar`);
    body.append(title, category, similarity);

    const meta = Object.entries(r.metadata || {}).filter(([, v]) => v !== "" && v !== null).slice(0, 4);
    if (meta.length) {
      const dl = document.createElement("dl");
      for (const [key, value] of meta) {
        const dt = document.createElement("dt");
        dt.textContent = key;
        const dd = document.createElement("dd");
        dd.textContent = String(value);
        dl.append(dt, dd);
      }
      body.append(dl);
    }
    const more = document.createElement("button");
    more.type = "button";
    more.className = "button secondary more";
    more.textContent = "More like this";
    more.setAttribute("aria-label", `More like product ${r.product_id}`);
    more.addEventListener("click", () => {
      searchProduct(r.product_id, `product ${r.product_id}`);
      window.scrollTo({ top: 0, behavior: "smooth" });
    });
    body.append(more);
    article.append(link, body);
    li.append(article);
    return li;
  }

  // -- overlays: garment outlines on the photo ---------------------------------------------------

  function drawOverlays(garments) {
    const w = els.photoImg.naturalWidth, h = els.photoImg.naturalHeight;
    if (!w || !h) return;
    const svg = els.boxes;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.replaceChildren();
    const ctx = els.masks.getContext("2d");
    els.masks.width = w;
    els.masks.height = h;
    ctx.clearRect(0, 0, w, h);
    const fontSize = Math.max(12, Math.round(Math.max(w, h) / 30));
    const line = Math.max(2, Math.round(Math.max(w, h) / 250));
    garments.forEach((g, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const [x1, y1, x2, y2] = g.box;
      const group = document.createElementNS(SVG, "g");
      group.setAttribute("class", "garment");
      const masked = g.mask && drawMask(ctx, g.mask, colour, line, w, h);
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", masked ? "box masked" : "box");
      rect.setAttribute("x", x1);
      rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(1, x2 - x1));
      rect.setAttribute("height", Math.max(1, y2 - y1));
      rect.setAttribute("stroke", colour);
      rect.addEventListener("click", () => focusGarment(i));
      const name = garmentName(g, i);
      const tag = document.createElementNS(SVG, "rect");  // the label's background
      tag.setAttribute("x", x1);
      tag.setAttribute("y", y1);
      tag.setAttribute("width", Math.round(fontSize * (0.62 * name.length + 0.8)));
      tag.setAttribute("height", Math.round(fontSize * 1.4));
      tag.setAttribute("fill", colour);
      tag.addEventListener("click", () => focusGarment(i));
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", x1 + fontSize * 0.4);
      text.setAttribute("y", y1 + fontSize * 1.05);
      text.setAttribute("font-size", fontSize);
      text.textContent = name;
      group.append(rect, tag, text);
      svg.append(group);
    });
    updateFocus();
  }

  // Masks arrive as uncompressed RLE ({size: [h, w], counts}) over row-major pixels, runs
  // alternating from "outside". The outline is the mask minus its erosion by `line` pixels.
  function decodeRle(mask) {
    const [h, w] = mask.size;
    const out = new Uint8Array(h * w);
    let pos = 0, value = 0;
    for (const count of mask.counts) {
      if (value) out.fill(1, pos, Math.min(pos + count, out.length));
      pos += count;
      value ^= 1;
    }
    return { data: out, w, h };
  }

  function erode1d(src, w, h, r, horizontal) {
    // A pixel stays set when every pixel within r along one axis is set: prefix sums make it O(n).
    const out = new Uint8Array(src.length);
    const lines = horizontal ? h : w, len = horizontal ? w : h;
    const prefix = new Int32Array(len + 1);
    for (let l = 0; l < lines; l++) {
      const at = (j) => (horizontal ? l * w + j : j * w + l);
      for (let j = 0; j < len; j++) prefix[j + 1] = prefix[j] + src[at(j)];
      for (let j = 0; j < len; j++) {
        const lo = Math.max(0, j - r), hi = Math.min(len, j + r + 1);
        out[at(j)] = prefix[hi] - prefix[lo] === hi - lo ? 1 : 0;
      }
    }
    return out;
  }

  function drawMask(ctx, mask, colour, line, w, h) {
    if (!mask.size || !mask.counts) return false;
    const m = decodeRle(mask);
    if (!m.w || !m.h) return false;
    const r = Math.max(1, Math.round(line * m.w / w));
    const inner = erode1d(erode1d(m.data, m.w, m.h, r, true), m.w, m.h, r, false);
    const image = new ImageData(m.w, m.h);
    const [cr, cg, cb] = [1, 3, 5].map((o) => parseInt(colour.slice(o, o + 2), 16));
    for (let p = 0; p < m.data.length; p++) {
      if (!m.data[p]) continue;
      const edge = !inner[p];
      image.data[p * 4] = cr;
      image.data[p * 4 + 1] = cg;
      image.data[p * 4 + 2] = cb;
      image.data[p * 4 + 3] = edge ? 255 : 40;
    }
    // Draw at mask resolution, then scale onto the photo-sized canvas.
    const tmp = document.createElement("canvas");
    tmp.width = m.w;
    tmp.height = m.h;
    tmp.getContext("2d").putImageData(image, 0, 0);
    ctx.drawImage(tmp, 0, 0, w, h);
    return true;
  }

  // -- start-up ---------------------------------------------------------------------------------

  async function loadCategories() {
    try {
      const response = await fetch("/api/categories");
      if (!response.ok) return;
      const data = await response.json();
      for (const c of data.categories) {
        const option = document.createElement("option");
        option.value = c.name;
        option.textContent = `${prettyCategory(c.name)} (${c.products})`;
        els.category.append(option);
      }
    } catch (err) {
      // The filter is optional: searching works without it.
    }
  }

  function addPicker(c) {
    const label = document.createElement("label");
    label.textContent = c.name;
    const select = document.createElement("select");
    select.name = `filter-${c.name}`;
    const any = document.createElement("option");
    any.value = "";
    any.textContent = "Any";
    select.append(any);
    for (const value of c.values) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      select.append(option);
    }
    select.addEventListener("change", () => { if (lastQuery) lastQuery(); });
    label.append(select);
    els.filters.append(label);
    filterControls.push(() => (select.value ? `${column(c.name)} = ${quoted(select.value)}` : null));
  }

  function addRange(c) {
    const label = document.createElement("label");
    label.className = "range";
    const bounds = document.createElement("span");
    bounds.className = "bounds";
    label.append(c.name, bounds);
    const bound = (placeholder, op) => {
      const input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      input.placeholder = placeholder;
      input.setAttribute("aria-label", `${c.name} ${op === ">=" ? "from" : "to"}`);
      input.addEventListener("change", () => { if (lastQuery) lastQuery(); });
      bounds.append(input);
      filterControls.push(() => (input.value !== "" && Number.isFinite(Number(input.value))
        ? `${column(c.name)} ${op} ${Number(input.value)}` : null));
    };
    bound(`${c.min}`, ">=");
    bounds.append("–");
    bound(`${c.max}`, "<=");
    els.filters.append(label);
  }

  async function loadFilters() {
    try {
      const response = await fetch("/api/filters");
      if (!response.ok) return;
      const data = await response.json();
      let shown = 0;
      for (const c of data.columns) {
        if (shown >= MAX_PICKERS || c.name.includes("`")) continue;
        if (c.type === "number" && c.min !== c.max) { addRange(c); shown++; }
        else if (c.type === "text" && c.values && c.values.length > 1) { addPicker(c); shown++; }
      }
      els.filters.hidden = shown === 0;
    } catch (err) {
      // Filters are optional: searching works without them.
    }
  }

  loadCategories();
  loadFilters();
})();
