/* One photo: every candidate of every set, ranked, with its element changes; label any of them. */
"use strict";

(() => {
  const { api, toast, el, bars, frame, ratioOf, fmtGain } = CC;
  const id = Number(location.pathname.split("/").filter(Boolean).pop());
  const $ = (sel) => document.querySelector(sel);
  let photo = null, aspect = null, selected = 0;

  const ranked = () => (photo.sets[aspect] || []);
  const current = () => ranked()[selected] || null;

  async function label(body) {
    try {
      const saved = await api(`/api/photos/${id}/labels`, { method: "POST", body: { source: "review", ...body } });
      toast(`saved: ${saved.kind}`);
    } catch (err) { toast(`could not save: ${err.message}`, true); }
  }

  function renderPreview() {
    const crop = current();
    $("#preview").replaceChildren(frame(photo, crop, {
      size: 1600, lazy: false, ratio: crop ? ratioOf(crop.aspect) : null,
      onAdjust: crop ? (box) => label({ kind: "box", aspect: crop.aspect, rank: crop.rank, box }) : null }));
    $("#explain").textContent = (photo.keep && crop && crop.aspect === photo.best.aspect && crop.rank === 1
      ? "Suggestion: keep as is (no grid crop beats the full frame by the keep margin). " : "") + (crop
      ? `${crop.aspect} #${crop.rank}: score ${crop.score.toFixed(4)}, ${fmtGain(crop.improvement)} over the full frame. ` +
        (crop.explanation.length ? "Changes: " + crop.explanation.map((c) => `${c.change >= 0 ? "enhances" : "reduces"} ${c.label}`).join(", ") + "." : "")
      : (photo.error || "no suggestion for this photo"));
  }

  function renderList() {
    const sets = Object.keys(photo.sets);
    $("#sets").replaceChildren(...sets.map((a) => el("button", {
      type: "button", class: a === aspect ? "on" : "", text: `${a} (${photo.sets[a].length})`,
      onclick: () => { aspect = a; selected = 0; render(); } })));
    const list = ranked();
    const scale = Math.max(1e-9, ...list.flatMap((c) => (c.changes || c.explanation).map((x) => Math.abs(x.change))));
    $("#cands").replaceChildren(...list.map((c, i) => el("div", {
      class: "cand" + (i === selected ? " selected" : ""), "data-rank": c.rank,
      onclick: () => { selected = i; render(); } },
      frame(photo, c, { size: 256, width: 120, subjectLabels: false }),
      el("div", {},
        el("h3", { text: `#${c.rank}  score ${c.score.toFixed(4)}  ${fmtGain(c.improvement)}` }),
        bars(c.changes || c.explanation, scale)))));
    const sel = $("#cands .cand.selected");
    if (sel) sel.scrollIntoView({ block: "nearest" });
  }

  function render() { renderPreview(); renderList(); }

  async function load() {
    photo = await api(`/api/photos/${id}`);
    document.title = `clipcrop: ${photo.name}`;
    $("#title").textContent = `${photo.name}  ${photo.width}\u00d7${photo.height}`;
    $("#status").textContent = photo.scorer ? `scored by ${photo.scorer}` : photo.status;
    if (!aspect || !photo.sets[aspect]) aspect = (photo.best && photo.best.aspect) || Object.keys(photo.sets)[0] || null;
    render();
  }

  const accept = () => { const c = current(); if (c) label({ kind: "accept", aspect: c.aspect, rank: c.rank }); };
  const reject = () => { const c = current(); if (c) label({ kind: "reject", aspect: c.aspect, rank: c.rank }); };
  const prefer = () => {
    const c = current();
    if (!c || c.rank === 1) { toast("pick a candidate other than #1 to prefer it", true); return; }
    label({ kind: "prefer", aspect: c.aspect, rank: c.rank, other_rank: 1 });
  };
  const rescore = async () => {
    try { await api(`/api/photos/${id}/score`, { method: "POST", body: {} }); await load(); toast("scored again"); }
    catch (err) { toast(`could not score: ${err.message}`, true); }
  };
  const writeXmp = async () => {
    const c = current();
    try {
      const res = await api(`/api/photos/${id}/metadata`, { method: "POST", body: c ? { aspect: c.aspect } : {} });
      toast(`wrote ${res.files.map((f) => f.split("/").pop()).join(", ")}`);
    } catch (err) { toast(`could not write XMP: ${err.message}`, true); }
  };
  $("#accept").onclick = accept; $("#reject").onclick = reject; $("#prefer").onclick = prefer;
  $("#rescore").onclick = rescore; $("#xmp").onclick = writeXmp;
  document.addEventListener("keydown", (ev) => {
    if (ev.metaKey || ev.ctrlKey || ev.altKey || !photo) return;
    const key = ev.key.toLowerCase();
    const n = ranked().length;
    const actions = {
      arrowdown: () => { selected = Math.min(n - 1, selected + 1); render(); },
      arrowup: () => { selected = Math.max(0, selected - 1); render(); },
      a: accept, r: reject, p: prefer, s: rescore,
      escape: () => { location.href = "/"; },
    };
    if (actions[key]) { ev.preventDefault(); actions[key](); }
  });
  CC.loadInfo().then(load).catch((err) => toast(`could not load: ${err.message}`, true));
})();
