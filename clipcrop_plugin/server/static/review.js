/* The review grid: pages of photos with their suggested crop, infinite scroll, keyboard + mouse. */
"use strict";

(() => {
  const { api, toast, el, bars, frame, ratioOf, fmtGain } = CC;
  const PAGE = 48;
  const grid = document.getElementById("grid");
  const sentinel = document.getElementById("sentinel");
  const status = document.getElementById("status");
  const controls = {
    aspect: document.getElementById("aspect"), sort: document.getElementById("sort"),
    filter: document.getElementById("filter"), element: document.getElementById("element"),
  };
  let state = { offset: 0, total: null, loading: false, generation: 0 };

  // The list was asked for the chosen set, so ``best`` is already that set's rank-1 crop.
  const cropFor = (photo) => photo.best;

  function setLabelClass(card, kind) {
    card.classList.remove("accepted", "rejected", "adjusted");
    if (kind === "accept") card.classList.add("accepted");
    else if (kind === "reject") card.classList.add("rejected");
    else if (kind === "box") card.classList.add("adjusted");
  }

  async function label(card, body) {
    try {
      const saved = await api(`/api/photos/${card.dataset.id}/labels`, { method: "POST", body: { source: "review", ...body } });
      setLabelClass(card, saved.kind);
      card.dataset.label = saved.kind;
      toast(`${saved.kind === "box" ? "adjusted" : saved.kind + "ed"}: ${card.dataset.name}`);
    } catch (err) {
      toast(`could not save: ${err.message}`, true);
    }
  }

  // The width a card's photo will have, from the grid's CSS (minimum column, gap, padding), so
  // that srcset can pick the right thumbnail before the card is laid out.
  function imageWidth() {
    const css = getComputedStyle(grid);
    const gap = parseFloat(css.columnGap) || 14;
    const min = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--card")) || 236;
    const cols = Math.max(1, Math.floor((grid.clientWidth + gap) / (min + gap)));
    return (grid.clientWidth - (cols - 1) * gap) / cols - 18;  // card padding and border
  }

  function card(photo) {
    const crop = cropFor(photo);
    const node = el("article", { class: "card" + (photo.keep ? " keep" : ""), tabindex: "0", role: "listitem",
      "data-id": photo.id, "data-name": photo.name });
    node.append(frame(photo, crop, {
      size: 512, width: imageWidth(), ratio: crop ? ratioOf(crop.aspect) : null,
      onAdjust: crop ? (box) => label(node, { kind: "box", aspect: crop.aspect, rank: crop.rank, box }) : null,
    }));
    node.append(el("div", { class: "meta" },
      el("span", { class: "name", text: photo.name, title: photo.folder }),
      crop ? el("span", { class: "gain" + (crop.improvement < 0 ? " neg" : ""),
        // "Keep as is": no crop beats the full frame by the keep margin; the dashed frame is
        // the best candidate, shown so that it can still be labelled.
        text: photo.keep ? `keep as is (${crop.aspect} ${fmtGain(crop.improvement)})` : `${crop.aspect} ${fmtGain(crop.improvement)}`,
        title: photo.keep ? "no grid crop beats the full frame by the keep margin: nothing is written"
          : `score ${crop.score.toFixed(4)}, improvement over the full frame` }) : null));
    if (crop && crop.explanation.length) node.append(bars(crop.explanation));
    const accept = () => crop && label(node, { kind: "accept", aspect: crop.aspect, rank: crop.rank });
    const reject = () => crop && label(node, { kind: "reject", aspect: crop.aspect, rank: crop.rank });
    node.append(el("div", { class: "actions" },
      el("button", { class: "accept", type: "button", text: "Accept", title: "A", onclick: accept, disabled: crop ? null : "" }),
      el("button", { class: "reject", type: "button", text: "Reject", title: "R", onclick: reject, disabled: crop ? null : "" }),
      el("a", { href: `/photo/${photo.id}`, text: "All crops", title: "O" })));
    node._accept = accept; node._reject = reject;
    if (photo.label) { node.dataset.label = photo.label.kind; setLabelClass(node, photo.label.kind); }
    return node;
  }

  function query() {
    const p = new URLSearchParams({ limit: PAGE, offset: state.offset, sort: controls.sort.value, status: "scored" });
    if (controls.filter.value) p.set("labelled", controls.filter.value === "labeled" ? "true" : "false");
    if (controls.element.value) p.set("enhances", controls.element.value);
    if (controls.aspect.value) p.set("aspect", controls.aspect.value);
    return p;
  }

  async function loadMore() {
    if (state.loading || (state.total !== null && state.offset >= state.total)) return;
    state.loading = true;
    const generation = state.generation;
    try {
      const page = await api(`/api/photos?${query()}`);
      if (generation !== state.generation) return;  // the filters changed meanwhile
      state.total = page.total;
      state.offset += page.items.length;
      const frag = document.createDocumentFragment();
      for (const photo of page.items) frag.append(card(photo));
      grid.append(frag);
      status.textContent = `${state.offset} of ${page.total} photos`;
      if (page.total === 0) {
        grid.append(el("p", { class: "muted empty", text: controls.filter.value === "unlabeled" && !controls.element.value
          ? "Nothing left to review here. Score photos with `clipcrop scan FOLDER` (or `clipcrop watch`), or show all photos."
          : "No scored photo matches these settings." }));
      }
      if (!grid.querySelector(".card.focused") && grid.firstElementChild) grid.firstElementChild.classList.add("focused");
    } catch (err) {
      toast(`could not load photos: ${err.message}`, true);
    } finally {
      if (generation === state.generation) state.loading = false;
    }
    // A tall window may show the sentinel again before the observer fires.
    if (sentinel.getBoundingClientRect().top < innerHeight + 800) loadMore();
  }

  function reset() {
    state = { offset: 0, total: null, loading: false, generation: state.generation + 1 };
    grid.replaceChildren();
    loadMore();
  }

  function focused() { return grid.querySelector(".card.focused") || grid.firstElementChild; }

  function move(current, step) {
    const cards = [...grid.children];
    const i = cards.indexOf(current);
    let j = i + step;
    if (Math.abs(step) !== 1) {
      // Up/down: the card in the same column of the previous/next row.
      const cols = Math.max(1, Math.round(grid.clientWidth / current.getBoundingClientRect().width));
      j = i + Math.sign(step) * cols;
    }
    const next = cards[Math.max(0, Math.min(cards.length - 1, j))];
    if (!next) return;
    current.classList.remove("focused");
    next.classList.add("focused");
    next.focus({ preventScroll: true });
    next.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("select, input") || ev.metaKey || ev.ctrlKey || ev.altKey) return;
    const current = focused();
    if (!current) return;
    const key = ev.key.toLowerCase();
    const actions = {
      arrowleft: () => move(current, -1), arrowright: () => move(current, 1),
      arrowup: () => move(current, -2), arrowdown: () => move(current, 2),
      a: () => { current._accept(); move(current, 1); },
      r: () => { current._reject(); move(current, 1); },
      o: () => { location.href = `/photo/${current.dataset.id}`; },
      enter: () => { location.href = `/photo/${current.dataset.id}`; },
    };
    if (actions[key]) { ev.preventDefault(); actions[key](); }
  });
  grid.addEventListener("focusin", (ev) => {
    const c = ev.target.closest(".card");
    if (!c) return;
    grid.querySelectorAll(".card.focused").forEach((n) => n !== c && n.classList.remove("focused"));
    c.classList.add("focused");
  });

  async function start() {
    const params = new URLSearchParams(location.search);
    for (const [k, c] of Object.entries(controls)) {
      if (!params.has(k)) continue;
      // The set and element lists arrive with /api/info; do not wait for them to ask for photos.
      if (![...c.options].some((o) => o.value === params.get(k))) c.append(el("option", { value: params.get(k), text: params.get(k) }));
      c.value = params.get(k);
    }
    for (const c of Object.values(controls)) c.addEventListener("change", () => {
      const p = new URLSearchParams();
      for (const [k, cc] of Object.entries(controls)) p.set(k, cc.value);
      history.replaceState(null, "", "?" + p);
      reset();
    });
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
      { rootMargin: "1200px 0px" }).observe(sentinel);
    reset();
    const info = await CC.loadInfo();
    const have = (c, v) => [...c.options].some((o) => o.value === v);
    for (const a of info.aspects) if (!have(controls.aspect, a)) controls.aspect.append(el("option", { value: a, text: a }));
    for (const e of info.elements) {
      const known = [...controls.element.options].find((o) => o.value === e.name);
      if (known) known.textContent = e.label;
      else controls.element.append(el("option", { value: e.name, text: e.label }));
    }
  }

  start().catch((err) => toast(`could not start: ${err.message}`, true));
})();
