/* Shared helpers of the review and photo pages: API calls, crop overlay with drag, bar charts. */
"use strict";

const CC = (() => {
  let elementLabels = {};

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    if (init.body !== undefined && typeof init.body !== "string") {
      init.body = JSON.stringify(init.body);
      init.headers["Content-Type"] = "application/json";
    }
    if (init.method && init.method !== "GET") init.headers["X-Clipcrop"] = "1";
    const res = await fetch(path, init);
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const detail = data && data.detail;
      throw new Error(typeof detail === "string" ? detail : `${res.status} ${res.statusText}`);
    }
    return data;
  }

  let toastTimer = null;
  function toast(message, isError = false) {
    let el = document.querySelector(".toast");
    if (!el) { el = document.createElement("div"); el.className = "toast"; document.body.append(el); }
    el.textContent = message;
    el.classList.toggle("error", isError);
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.remove("show"), 2200);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  async function loadInfo() {
    const info = await api("/api/info");
    elementLabels = Object.fromEntries(info.elements.map((e) => [e.name, e.label]));
    return info;
  }

  /** Small diverging bar chart of element changes: [{element, change}]. */
  function bars(changes, scale) {
    const box = el("div", { class: "bars" });
    const max = scale || Math.max(1e-9, ...changes.map((c) => Math.abs(c.change)));
    for (const c of changes) {
      const pct = Math.min(50, (Math.abs(c.change) / max) * 50);
      const span = el("span", { class: c.change >= 0 ? "up" : "down", style: { width: pct + "%" } });
      box.append(
        el("div", { text: c.label || elementLabels[c.element] || c.element.replaceAll("_", " "),
                    title: `${c.element}: ${c.change >= 0 ? "+" : ""}${c.change.toFixed(4)}` }),
        el("div", { class: "bar", "data-element": c.element }, span));
    }
    return box;
  }

  /**
   * A photo frame with the crop drawn over it. ``crop.fractions`` is (l, t, r, b) of the upright
   * image. When ``onAdjust`` is given the box can be moved (drag inside) and resized (drag a
   * corner handle); ``ratio`` (w/h, or null for free) keeps a ratio set's shape.
   */
  /** The photo's subjects (faces, people, the salient region) as thin outlines; never in the way of a drag. */
  function subjectBoxes(photo, withLabels) {
    return (photo.subjects || []).map((s) => {
      const [sl, st, sr, sb] = s.fractions;
      const kind = s.kind.replace("_", " ");
      return el("div", {
        class: `subject ${s.kind}`, "data-kind": s.kind, title: `${kind} (${Math.round(s.score * 100)}% sure)`,
        style: { left: sl * 100 + "%", top: st * 100 + "%", width: (sr - sl) * 100 + "%", height: (sb - st) * 100 + "%" } },
        withLabels ? el("span", { text: kind }) : null);
    });
  }

  function frame(photo, crop, { size = 512, onAdjust = null, ratio = null, lazy = true, width = 260,
                                subjects = true, subjectLabels = true } = {}) {
    const root = el("div", { class: "frame", style: { aspectRatio: `${photo.width} / ${photo.height}` } });
    // ``width`` is the CSS width the frame will get: the browser picks the 256 px thumbnail for
    // ordinary screens and the 512 px one for HiDPI screens or wide cards.
    const src = (s) => `/api/photos/${photo.id}/thumbnail?size=${s}`;
    // An offline photo's file cannot be read now (unmounted disk): show the crop on an empty frame.
    if (photo.offline) root.append(el("div", { class: "nocrop", text: "offline", style: { zIndex: 2, top: "6px", bottom: "auto" } }));
    else root.append(el("img", {
      src: src(size), srcset: size <= 512 ? `${src(256)} 256w, ${src(512)} 512w` : null,
      sizes: size <= 512 ? `${Math.ceil(width)}px` : null, alt: photo.name, draggable: "false",
      loading: lazy ? "lazy" : "eager", decoding: "async", width: photo.width, height: photo.height }));
    if (subjects) root.append(...subjectBoxes(photo, subjectLabels));
    if (!crop) {
      root.append(el("div", { class: "nocrop", text: photo.status === "failed" ? "could not score" : "no suggestion" }));
      return root;
    }
    const box = el("div", { class: "crop", "data-aspect": crop.aspect }, el("div", { class: "thirds" }));
    let [l, t, r, b] = crop.fractions;
    const place = () => Object.assign(box.style, {
      left: l * 100 + "%", top: t * 100 + "%", width: (r - l) * 100 + "%", height: (b - t) * 100 + "%" });
    place();
    root.append(box);
    if (!onAdjust) return root;
    for (const corner of ["nw", "ne", "sw", "se"]) box.append(el("div", { class: `handle ${corner}`, "data-corner": corner }));
    // The ratio in fraction units: a w:h pixel ratio is (w/h) * (H/W) in fractions.
    const fracRatio = ratio ? ratio * (photo.height / photo.width) : null;
    const minSide = 0.05;
    let drag = null;
    box.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      ev.stopPropagation();
      box.setPointerCapture(ev.pointerId);
      drag = { corner: ev.target.dataset.corner || null, x: ev.clientX, y: ev.clientY, start: [l, t, r, b],
               rect: root.getBoundingClientRect(), moved: false };
    });
    box.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = (ev.clientX - drag.x) / drag.rect.width, dy = (ev.clientY - drag.y) / drag.rect.height;
      if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 2) drag.moved = true;
      const [sl, st, sr, sb] = drag.start;
      if (!drag.corner) {
        const w = sr - sl, h = sb - st;
        l = Math.min(Math.max(0, sl + dx), 1 - w); t = Math.min(Math.max(0, st + dy), 1 - h);
        r = l + w; b = t + h;
      } else {
        const west = drag.corner.includes("w"), north = drag.corner.includes("n");
        // The corner opposite the handle stays put.
        const ax = west ? sr : sl, ay = north ? sb : st;
        let w = Math.abs((west ? sl + dx : sr + dx) - ax);
        let h = Math.abs((north ? st + dy : sb + dy) - ay);
        w = Math.min(Math.max(minSide, w), west ? ax : 1 - ax);
        h = Math.min(Math.max(minSide, h), north ? ay : 1 - ay);
        if (fracRatio) {
          // Follow the larger pull, then shrink both sides until the box fits the frame.
          if (w / fracRatio > h) h = w / fracRatio; else w = h * fracRatio;
          const maxW = west ? ax : 1 - ax, maxH = north ? ay : 1 - ay;
          const k = Math.min(1, maxW / w, maxH / h);
          w *= k; h *= k;
        }
        l = west ? ax - w : ax; r = l + w; t = north ? ay - h : ay; b = t + h;
      }
      place();
    });
    const end = (ev) => {
      if (!drag) return;
      const moved = drag.moved;
      drag = null;
      if (box.hasPointerCapture(ev.pointerId)) box.releasePointerCapture(ev.pointerId);
      if (!moved) return;
      const px = [Math.round(l * photo.width), Math.round(t * photo.height),
                  Math.round(r * photo.width), Math.round(b * photo.height)];
      onAdjust(px, [l, t, r, b]);
    };
    box.addEventListener("pointerup", end);
    box.addEventListener("pointercancel", end);
    return root;
  }

  function ratioOf(aspect) {
    const m = /^(\d+):(\d+)$/.exec(aspect || "");
    return m ? Number(m[1]) / Number(m[2]) : null;
  }

  function fmtGain(v) { return (v >= 0 ? "+" : "") + v.toFixed(3); }

  return { api, toast, el, bars, frame, loadInfo, ratioOf, fmtGain };
})();
