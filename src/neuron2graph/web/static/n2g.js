// neuron2graph browser: vanilla JS, no network libraries. Works served (fetch /api/...) and
// from file:// (static report: data embedded in the page, predictions by a local trie matcher).
"use strict";
const N2G = (() => {
  const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const vis = t => t.replace(/\n/g, "↵\n").replace(/\t/g, "⇥");
  const fmt = (v, d = 3) => v === null || v === undefined ? "–" : Number(v).toFixed(d);
  function colour(v) { // white -> red for positive, white -> blue for negative
    const t = Math.max(-1, Math.min(1, v || 0)), a = Math.abs(t);
    return t >= 0 ? `rgba(220,30,30,${a.toFixed(3)})` : `rgba(40,100,230,${a.toFixed(3)})`;
  }
  function tokensHtml(tokens, values, cls, title) {
    return tokens.map((t, i) => `<span class="tok ${cls}" style="background:${colour(values ? values[i] : 0)}" title="${esc(title)}: ${fmt(values ? values[i] : 0, 2)}">${esc(vis(t))}</span>`).join("");
  }
  // ---- trie matcher mirroring NeuronGraph.predict (longest complete match, wildcard backtracking)
  function buildTrie(json) {
    const mk = o => { const n = {end: o.end_activation ?? null, kids: new Map()};
      for (const c of o.children || []) n.kids.set(c.token === null ? "\u0000*" : c.token, mk(c)); return n; };
    const root = new Map(); for (const c of json.root) root.set(c.token, mk(c)); return root;
  }
  function predict(root, tokens) {
    return tokens.map((tok, i) => {
      const first = root.get(tok); if (!first) return 0;
      let best = null; const stack = [[first, i - 1, 1]];
      while (stack.length) { const [node, pos, len] = stack.pop();
        if (node.end !== null && (!best || len > best[0] || (len === best[0] && node.end > best[1]))) best = [len, node.end];
        if (pos < 0 || !node.kids.size) continue;
        const ex = node.kids.get(tokens[pos]); if (ex) stack.push([ex, pos - 1, len + 1]);
        const wc = node.kids.get("\u0000*"); if (wc) stack.push([wc, pos - 1, len + 1]); }
      return best ? best[1] : 0; });
  }
  // ---- index page
  function index(rows, isStatic) {
    let sort = "max_act", desc = true, offset = 0; const limit = 100;
    const $ = id => document.getElementById(id), body = document.querySelector("#neurons tbody");
    const link = id => isStatic ? `neurons/${id.replace(":", "_")}.html` : `/neurons/${id}`;
    function draw(data) {
      body.innerHTML = data.rows.map(r => `<tr><td><a href="${link(r.id)}">${r.id}</a></td><td>${fmt(r.max_act)}</td><td>${fmt(r.density, 4)}</td><td>${fmt(r.f1, 2)}</td><td>${r.n_components ?? "–"}</td><td>${r.n_nodes ?? "–"}</td></tr>`).join("");
      $("count").textContent = `${data.total} neurons`;
      $("page").textContent = `${data.total ? offset + 1 : 0}–${Math.min(offset + limit, data.total)}`;
    }
    async function load() {
      const q = $("filter").value.trim(), layer = $("layer").value, graphs = $("graphs").checked;
      if (rows) {
        let r = rows.filter(x => (!q || x.id.includes(q)) && (layer === "" || String(x.layer) === layer) && (!graphs || x.n_nodes !== null));
        r.sort((a, b) => { const va = sort === "id" ? a.layer * 1e6 + a.neuron : a[sort], vb = sort === "id" ? b.layer * 1e6 + b.neuron : b[sort];
          const c = (va ?? -Infinity) < (vb ?? -Infinity) ? -1 : (va ?? -Infinity) > (vb ?? -Infinity) ? 1 : 0; return desc ? -c : c; });
        draw({total: r.length, rows: r.slice(offset, offset + limit)}); return;
      }
      const p = new URLSearchParams({sort, desc, q, graphs, limit, offset}); if (layer !== "") p.set("layer", layer);
      draw(await (await fetch(`/api/neurons?${p}`)).json());
    }
    document.querySelectorAll("th[data-sort]").forEach(th => th.onclick = () => {
      desc = sort === th.dataset.sort ? !desc : true; sort = th.dataset.sort; offset = 0; load(); });
    $("filter").oninput = $("layer").onchange = $("graphs").onchange = () => { offset = 0; load(); };
    $("prev").onclick = () => { offset = Math.max(0, offset - limit); load(); };
    $("next").onclick = () => { offset += limit; load(); };
    const form = $("search");
    if (form) form.onsubmit = async e => { e.preventDefault();
      const p = new URLSearchParams(new FormData(form)); const r = await fetch(`/api/search?${p}`); const d = await r.json();
      $("search-out").innerHTML = r.ok ? (d.length ? d.map(x => `<a href="/neurons/${x.id}">${x.id}</a>`).join(" ") : "no match") : esc(d.detail); };
    load();
  }
  // ---- neuron page
  function neuron(page) {
    const $ = id => document.getElementById(id);
    const ex = $("examples");
    ex.innerHTML = page.examples.map((e, k) => `<div class="tokens example" data-window="${e.window}"><span class="row-label">#${k} window ${e.window}</span><span class="real">${tokensHtml(e.tokens, e.acts, "real-tok", "activation")}</span>${e.pred ? `<span class="pred"><span class="row-label">graph</span>${tokensHtml(e.tokens, e.pred, "pred-tok", "predicted")}</span>` : ""}</div>`).join("");
    $("show-pred").onchange = ev => ex.classList.toggle("hide-pred", !ev.target.checked);
    // hover on graph nodes
    const tip = $("tip");
    document.querySelectorAll("#graph g.node").forEach(g => {
      const n = page.nodes[g.id]; if (!n) return;
      const t = g.querySelector("title"); if (t) t.remove();
      g.addEventListener("mouseenter", ev => {
        const val = n.kind === "activating" ? `activation ${fmt(n.activation, 2)}` : `importance ${fmt(n.importance, 2)}`;
        tip.innerHTML = `<b>${esc(vis(JSON.stringify(n.token)))}</b> · ${n.kind} · ${val}${n.ends ? ` · ends a path (predicts ${fmt(n.end_activation, 2)})` : ""}<br>depth ${n.depth - 1} to the left<br>examples: ${n.examples.length ? n.examples.map(x => "#" + x).join(", ") + " (click to mark them)" : "–"}`;
        tip.hidden = false; g.classList.add("hl"); move(ev); });
      g.addEventListener("mousemove", move);
      g.addEventListener("click", () => { // mark the examples this node came from
        const divs = [...ex.querySelectorAll(".example")];
        divs.forEach((d, k) => d.classList.toggle("hl-ex", n.examples.includes(k)));
        const first = divs.find(d => d.classList.contains("hl-ex")); if (first) first.scrollIntoView({behavior: "smooth", block: "center"}); });
      g.addEventListener("mouseleave", () => { tip.hidden = true; g.classList.remove("hl"); });
    });
    function move(ev) { tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px"; }
    // histogram (hand-drawn SVG bars, log counts)
    const h = page.stats.hist || [], edges = page.stats.hist_edges || [];
    if (h.length) { const W = 600, H = 140, mx = Math.max(...h.map(c => Math.log10(1 + c))), bw = W / h.length;
      $("hist").innerHTML = `<svg id="hist-svg" width="${W}" height="${H + 20}" viewBox="0 0 ${W} ${H + 20}">` + h.map((c, i) => { const y = mx ? Math.log10(1 + c) / mx * H : 0;
        return `<rect x="${i * bw}" y="${H - y}" width="${Math.max(1, bw - 1)}" height="${y}" fill="#c62828"><title>[${fmt(edges[i], 2)}, ${fmt(edges[i + 1], 2)}): ${c}</title></rect>`; }).join("") +
        `<text x="0" y="${H + 15}" font-size="11">${fmt(edges[0], 2)}</text><text x="${W}" y="${H + 15}" font-size="11" text-anchor="end">${fmt(edges[edges.length - 1], 2)}</text></svg><div class="legend">token count per activation bin (log scale)</div>`; }
    else $("hist").textContent = "no histogram recorded";
    // extra sections: eval, decode, similar
    let extra = "";
    if (page.eval) extra += `<h2>Evaluation</h2><table class="table">${Object.entries(page.eval).filter(([k]) => !["layer", "neuron"].includes(k)).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${typeof v === "number" ? fmt(v, 3) : esc(v ?? "–")}</td></tr>`).join("")}</table>`;
    if (page.decode) extra += `<h2>Decoded tokens</h2><table class="table">${Object.entries(page.decode).map(([kind, rows]) => `<tr><td>${esc(kind)}</td><td style="text-align:left" class="tokens">${rows.slice(0, 12).map(r => esc(vis(JSON.stringify(r.token)))).join(" ")}</td></tr>`).join("")}</table>`;
    if (page.similar && page.similar.length) extra += `<h2>Similar neurons</h2><p>${page.similar.map(s => { const id = s.id || `${s.layer}:${s.neuron}`;
      return `<a href="${page.static ? id.replace(":", "_") + ".html" : "/neurons/" + id}">${id}</a> (${fmt(s.similarity ?? s.score, 2)})`; }).join(" · ")}</p>`;
    $("extra").innerHTML = extra;
    // try it
    const trie = page.trie ? buildTrie(page.trie) : null;
    $("try-go").onclick = async () => {
      const text = $("try-text").value, out = $("try-out");
      if (!trie) { out.textContent = "no graph for this neuron"; return; }
      let d;
      if (page.static) { const tokens = text.split(/(?= )/).filter(t => t.length); d = {tokens, pred: predict(trie, tokens)}; }
      else { const r = await fetch(`/api/neurons/${page.id}/predict`, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({text})});
        d = await r.json(); if (!r.ok) { out.textContent = d.detail; return; } }
      out.innerHTML = `<span class="pred try-pred"><span class="row-label">graph</span>${tokensHtml(d.tokens, d.pred, "pred-tok", "predicted")}</span>` +
        (d.real ? `<span class="real"><span class="row-label">model</span>${tokensHtml(d.tokens, d.real, "real-tok", "activation")}</span>` : "");
    };
    $("try-text").addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("try-go").click(); } });
  }
  return {index, neuron, predict, buildTrie};
})();
