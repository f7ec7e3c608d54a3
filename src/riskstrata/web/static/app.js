// riskstrata dashboard: draws the Plotly specs the server rendered and wires the few
// interactions (sorting, selectors, uploads, builds). Plain JavaScript, no build step, no CDN.
"use strict";

const PLOT_CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["sendDataToCloud", "select2d", "lasso2d"]};

function drawFigures() {
  if (typeof Plotly === "undefined") return;
  for (const el of document.querySelectorAll("[data-figure]")) {
    const spec = JSON.parse(document.getElementById(el.dataset.figure).textContent);
    if (el.clientWidth < 520 && spec.layout.title) {  // a phone: titles must fit one line
      spec.layout.title.font = {size: 11};
      spec.layout.margin = Object.assign({}, spec.layout.margin, {l: Math.min(spec.layout.margin.l || 60, 50)});
    }
    Plotly.newPlot(el, spec.data, spec.layout, PLOT_CONFIG);
  }
}

function sortableTables() {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("th[data-sort]").forEach((th, col) => {
      th.tabIndex = 0;
      th.title = "sort";
      const sort = () => {
        const body = table.tBodies[0];
        const down = th.dataset.dir !== "desc";
        table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
        th.dataset.dir = down ? "desc" : "asc";
        const key = row => {
          const v = row.cells[col].dataset.value;
          if (th.dataset.sort === "num") { const x = parseFloat(v); return isNaN(x) ? -Infinity : x; }
          return v;
        };
        const rows = Array.from(body.rows).sort((a, b) => {
          const x = key(a), y = key(b);
          const c = x < y ? -1 : x > y ? 1 : 0;
          return down ? -c : c;
        });
        rows.forEach(r => body.appendChild(r));
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", e => { if (e.key === "Enter") sort(); });
    });
  }
}

function cumulativeSelector() {
  const box = document.getElementById("cum-selector");
  if (!box) return;
  box.addEventListener("change", e => {
    const plot = document.getElementById(box.dataset.target);
    if (typeof Plotly !== "undefined" && e.target.type === "checkbox") {
      Plotly.restyle(plot, {visible: e.target.checked ? true : "legendonly"}, [parseInt(e.target.value, 10)]);
    }
  });
}

function pairSelector() {
  const form = document.getElementById("pair-form");
  if (!form) return;
  let asked = 0;  // a slower answer to an earlier choice must not overwrite a newer one
  form.addEventListener("change", async () => {
    const a = form.elements.a.value, b = form.elements.b.value, mine = ++asked;
    const out = document.getElementById("pair-value");
    out.textContent = "…";
    const resp = await fetch(`/factors/${encodeURIComponent(form.dataset.model)}/pair?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`,
                             {credentials: "same-origin"});
    const body = await resp.json();
    if (mine !== asked) return;
    if (!resp.ok) { out.textContent = body.message || "error"; return; }
    out.dataset.value = body.correlation;
    out.dataset.pair = `${body.a}|${body.b}`;
    out.textContent = body.correlation === null ? "—" : body.correlation.toFixed(3);
    document.getElementById("pair-days").textContent = `over ${body.n_days} common days`;
    if (typeof Plotly !== "undefined") Plotly.react("pair", body.figure.data, body.figure.layout, PLOT_CONFIG);
  });
}

function buildButtons() {
  for (const button of document.querySelectorAll("button.build")) {
    const progress = button.parentElement.querySelector(".progress");
    const bar = progress.querySelector(".bar"), stage = progress.querySelector(".stage");
    const poll = async jobId => {
      progress.hidden = false;
      button.disabled = true;
      for (;;) {
        const resp = await fetch(`/jobs/${encodeURIComponent(jobId)}`, {credentials: "same-origin"});
        const job = await resp.json();
        if (!resp.ok) { stage.textContent = job.message; button.disabled = false; return; }
        bar.style.width = `${Math.round(100 * (job.progress || 0))}%`;
        stage.textContent = job.status === "failed" ? `failed: ${job.error}` : (job.stage || job.status);
        if (job.status === "done") { location.reload(); return; }
        if (job.status === "failed") { button.disabled = false; return; }
        await new Promise(r => setTimeout(r, 400));
      }
    };
    button.addEventListener("click", async () => {
      const resp = await fetch(button.dataset.buildUrl, {method: "POST", credentials: "same-origin"});
      const job = await resp.json();
      if (!resp.ok) { stage.textContent = job.message; progress.hidden = false; return; }
      poll(job.job_id);
    });
    if (button.dataset.job) poll(button.dataset.job);
  }
}

function holdingsForm() {
  const file = document.getElementById("holdings-file");
  const text = document.getElementById("holdings");
  if (!file || !text) return;
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (!f) return;
    const reader = new FileReader();
    reader.onload = () => { text.value = reader.result; };
    reader.readAsText(f);
  });
  const sample = document.getElementById("load-sample");
  sample.addEventListener("click", async () => {
    const resp = await fetch(sample.dataset.url, {credentials: "same-origin"});
    text.value = await resp.text();
    document.getElementById("analyze").click();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawFigures();
  sortableTables();
  cumulativeSelector();
  pairSelector();
  buildButtons();
  holdingsForm();
});
