// A Plotly figure drawn by the app's plotly.js bundle (app/static, 1.3 MB: core and the four trace types the app
// draws, built by scripts/plotly) instead of st.plotly_chart's full one (4.7 MB): the browser evaluates a fraction
// of the code before the first chart (docs/recipe.md). Loaded once
// per page; the figure's frames step in the browser (below), and with `clicks` a click on a point
// sets the component's "selection" state ({points: [...]}, as st.plotly_chart's selection), which reruns the page.
function plotly(bundle) {
  if (!window.__gramPlotly) {
    window.__gramPlotly = new Promise((resolve, reject) => {
      const before = window.Plotly;  // st.plotly_chart's, if a page has both: each keeps its own
      const s = document.createElement("script");
      s.src = bundle;
      s.onload = () => {
        const P = window.Plotly;
        if (before) window.Plotly = before;
        lazyArrayAttributes(P.PlotSchema);  // once: the bundle loads once per page
        resolve(P);
      };
      s.onerror = () => { window.__gramPlotly = null; reject(new Error(`could not load ${bundle}`)); };
      document.head.appendChild(s);
    });
  }
  return window.__gramPlotly;
}

// Every calc (each step's restyle included) crawls every trace's attribute schema for the names of its array
// attributes (`_arrayAttrs`), which event data (hover, click, selection) and texttemplate drawing read, none of
// them on a step here: ~1 ms a trace, 13-23 ms of a step on Recursion and Trajectories (docs/recipe.md). The
// crawl is made when first read instead.
function lazyArrayAttributes(schema) {
  const find = schema.findArrayAttributes;
  schema.findArrayAttributes = (trace) => {
    let names = null;
    const real = () => names || (names = find(trace));
    return new Proxy([], {
      get: (_, k) => { const a = real(), v = a[k]; return typeof v === "function" ? v.bind(a) : v; },
      has: (_, k) => k in real(),
      ownKeys: () => Reflect.ownKeys(real()),
      getOwnPropertyDescriptor: (_, k) => Reflect.getOwnPropertyDescriptor(real(), k),
    });
  };
}

// Stepping. The figure's slider and play/pause buttons name its frames for Plotly.animate (st.plotly_chart runs
// them so). Here the slider and buttons are plain HTML under the plot, in the room the figure keeps for them, and a
// step restyles the traces its frame names: Plotly.animate with redraw computes the whole figure twice (its
// transition's defaults and calc, then the redraw's) and a Plotly slider is drawn again with every step, every step
// label measured (docs/recipe.md). A frame names the one before as its baseframe and carries what changed since;
// the state at a step is its chain merged, as Plotly's computeFrame does.
const animates = (s) => s.method === "animate" && Array.isArray(s.args);
const isFrameStep = (s) => animates(s) && Array.isArray(s.args[0]) && s.args[0][0] !== null;
const isPlay = (b) => animates(b) && b.args[0] === null;
const isPause = (b) => animates(b) && Array.isArray(b.args[0]) && b.args[0][0] === null;
const isPlain = (v) => v && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v);

function ownStepping(layout) {
  // the layout without its frame slider and animate buttons, and what the HTML player needs of them
  const sliders = layout.sliders || [], menus = layout.updatemenus || [];
  const slider = sliders.find((s) => (s.steps || []).length && s.steps.every(isFrameStep));
  if (!slider) return { layout, spec: null };
  const buttons = menus.flatMap((m) => m.buttons || []);
  const play = buttons.find(isPlay), pause = buttons.find(isPause);
  const spec = {
    names: slider.steps.map((s) => s.args[0][0]), labels: slider.steps.map((s) => s.label),
    active: slider.active || 0, prefix: (slider.currentvalue || {}).prefix || "",
    duration: (play && play.args[1] && play.args[1].frame && play.args[1].frame.duration) || 500,
    playLabel: play ? play.label : "\u25b6 play",
    pauseLabel: pause ? pause.label : "\u275a\u275a pause",
  };
  const out = { ...layout, sliders: sliders.filter((s) => s !== slider),
                updatemenus: menus.filter((m) => !(m.buttons || []).some(animates)) };
  return { layout: out, spec };
}

function merge(into, from) {  // plain objects deeply, arrays and values replaced
  for (const [k, v] of Object.entries(from)) into[k] = isPlain(v) ? merge(isPlain(into[k]) ? { ...into[k] } : {}, v) : v;
  return into;
}

function flatten(obj, prefix, out) {  // {marker: {color: c}} -> {"marker.color": c}, as restyle takes it
  for (const [k, v] of Object.entries(obj)) {
    if (isPlain(v)) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

function setFrames(gd, frames) {
  gd._gramFrames = { byName: new Map(frames.map((f) => [f.name, f])), states: new Map() };
  gd._gramPlaying = (gd._gramPlaying || 0) + 1;  // a new figure stops a play
}

function stepper(gd) {
  const state = (name) => {  // trace index -> merged update at this frame
    const { byName, states } = gd._gramFrames;
    if (!states.has(name)) {
      const f = byName.get(name);
      const at = f.baseframe && byName.has(f.baseframe) ? new Map([...state(f.baseframe)].map(([i, t]) => [i, { ...t }])) : new Map();
      (f.traces || f.data.map((_, i) => i)).forEach((i, k) => at.set(i, merge(at.get(i) || {}, f.data[k] || {})));
      states.set(name, at);
    }
    return states.get(name);
  };
  let busy = null, wanted = null;
  const show = (name) => {  // the latest wanted step wins while one is being drawn
    if (!gd._gramFrames.byName.has(name)) return Promise.resolve();
    if (busy) { wanted = name; return busy; }
    const at = state(name), idx = [...at.keys()], update = {};
    idx.forEach((i, k) => {
      for (const [key, v] of Object.entries(flatten(at.get(i), "", {}))) (update[key] = update[key] || new Array(idx.length))[k] = v;
    });
    // restyling "type", even to the same, resets the traces' axes to autorange (plotly.js's _restyle); animate
    // keeps a figure's fixed ranges, and a frame here keeps each trace's type
    if (update.type && update.type.every((t, k) => t === undefined || t === (gd.data[idx[k]].type || "scatter"))) delete update.type;
    busy = gd._gramPlotly.restyle(gd, update, idx).finally(() => {
      busy = null;
      if (wanted !== null) { const n = wanted; wanted = null; return show(n); }
    });
    return busy;
  };
  return show;
}

// A figure seen before, at the same width, is drawn with the margins automargin fitted it to then, and margin
// expansion off: the same drawing in one pass, where automargin draws, measures the labels and draws again (on
// Trajectories' figures half their time). Fitting again from its own fitted margins would push a few px further
// each time (docs/recipe.md), hence expansion off, not automargin from them.
const MARGINS = "gram-margins", KEPT = 256;
function digest(text) {  // FNV-1a, 32 bits
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}
function storedMargins() {
  try { return JSON.parse(window.localStorage.getItem(MARGINS)) || {}; } catch (e) { return {}; }
}
function keepMargins(key, size) {
  const all = storedMargins();
  delete all[key];  // re-inserted last: the oldest go first
  all[key] = { l: size.l, r: size.r, t: size.t, b: size.b };
  const keys = Object.keys(all);
  keys.slice(0, Math.max(0, keys.length - KEPT)).forEach((k) => delete all[k]);
  try { window.localStorage.setItem(MARGINS, JSON.stringify(all)); } catch (e) { /* full or off: draw as before */ }
}

const PLAYER_CSS = `
.gram-wrap { position: relative; }
.gram-player { position: absolute; left: 10px; right: 10px; bottom: 8px; display: flex; align-items: flex-end; gap: 6px;
  font-family: "Source Sans Pro", "Source Sans 3", sans-serif; font-size: 13px; color: #31333f; }
.gram-player button { font: inherit; color: inherit; background: #fff; border: 1px solid #bec8d9; border-radius: 3px;
  padding: 3px 10px; cursor: pointer; }
.gram-player button:hover { background: #f0f2f6; }
.gram-track { flex: 1; margin-left: 12px; }
.gram-label { font-size: 14px; margin-bottom: 2px; }
.gram-player input[type=range] { width: 100%; margin: 0; accent-color: #6d28d9; cursor: pointer; }`;

function player(gd, wrap) {
  if (!document.getElementById("gram-player-css")) {
    const st = document.createElement("style");
    st.id = "gram-player-css";
    st.textContent = PLAYER_CSS;
    document.head.appendChild(st);
  }
  const el = document.createElement("div");
  el.className = "gram-player";
  el.innerHTML = '<button type="button" class="gram-play"></button><button type="button" class="gram-pause"></button>' +
    '<div class="gram-track"><div class="gram-label"></div><input type="range" min="0" step="1" aria-label="step"></div>';
  wrap.appendChild(el);
  const range = el.querySelector("input"), label = el.querySelector(".gram-label");
  const at = (k) => {
    const spec = gd._gramSpec;
    range.value = String(k);
    label.textContent = spec.prefix + spec.labels[k];
    return gd._gramStep(spec.names[k]);
  };
  const quiet = (promise) => promise.catch(() => {});  // a figure replaced mid-step has nothing left to draw
  range.addEventListener("input", () => { gd._gramPlaying++; quiet(at(+range.value)); });
  el.querySelector(".gram-pause").addEventListener("click", () => { gd._gramPlaying++; });
  el.querySelector(".gram-play").addEventListener("click", () => quiet((async () => {
    const run = ++gd._gramPlaying, n = gd._gramSpec.names.length;
    let k = +range.value + 1;
    if (k >= n) k = 0;  // at the last step, play starts over
    for (; k < n && run === gd._gramPlaying; k++) {
      await at(k);
      await new Promise((r) => setTimeout(r, gd._gramSpec.duration));
    }
  })()));
  return (spec) => {  // a new figure: its steps, opened at its active one
    gd._gramSpec = spec;
    el.querySelector(".gram-play").textContent = spec.playLabel;
    el.querySelector(".gram-pause").textContent = spec.pauseLabel;
    range.max = String(spec.names.length - 1);
    range.value = String(spec.active);
    label.textContent = spec.prefix + spec.labels[spec.active];
  };
}

export default function (component) {
  const { parentElement, data, setStateValue } = component;
  let gd = parentElement.querySelector(".gram-plot");
  if (!gd) {
    const wrap = document.createElement("div");
    wrap.className = "gram-wrap";
    gd = document.createElement("div");
    gd.className = "gram-plot";
    wrap.appendChild(gd);
    parentElement.appendChild(wrap);
  }
  const width = () => Math.max(200, parentElement.clientWidth || gd.clientWidth || 700);
  const text = new TextDecoder().decode(data);  // JSON bytes (ui.chart)
  const { figure, config, clicks, bundle } = JSON.parse(text);
  plotly(bundle).then((P) => {
    gd._gramPlotly = P;  // the benchmark steps the figure with the instance that drew it
    gd._gramSelect = setStateValue;
    const frames = figure.frames || [];
    const { layout, spec } = frames.length ? ownStepping(figure.layout) : { layout: figure.layout, spec: null };
    const w = width(), key = `${digest(text)}@${w}`, seen = storedMargins()[key];
    const lay = { ...layout, width: w, ...(seen ? { margin: { ...layout.margin, ...seen, autoexpand: false } } : {}) };
    return P.react(gd, { data: figure.data, layout: lay, frames, config }).then(() => {
      if (!seen && gd._fullLayout && gd._fullLayout._size) keepMargins(key, gd._fullLayout._size);
      setFrames(gd, frames);
      if (spec) {
        if (!gd._gramStep) gd._gramStep = stepper(gd);  // the benchmark steps with it too
        if (!gd._gramPlayer) gd._gramPlayer = player(gd, gd.parentElement);
        gd._gramPlayer(spec);
      }
      return clicks;
    });
  }).then((clicks) => {
    if (clicks && !gd._gramClicks) {
      gd._gramClicks = true;
      gd.on("plotly_click", (e) => gd._gramSelect("selection", { points: e.points.map((p) => (
        { curve_number: p.curveNumber, point_index: p.pointIndex, x: p.x, y: p.y, customdata: p.customdata })) }));
    }
    if (!gd._gramResize) {  // follow the column's width, as st.plotly_chart does
      let last = width();
      gd._gramResize = new ResizeObserver(() => {
        const w = width();
        if (Math.abs(w - last) > 1 && gd._gramPlotly) { last = w; gd._gramPlotly.relayout(gd, { width: w }); }
      });
      gd._gramResize.observe(parentElement);
    }
  }).catch((e) => {
    gd.textContent = `This figure could not be drawn (${e.message}). Start the app from the repository's root, ` +
      "where .streamlit/config.toml turns on static file serving.";
  });
  return () => {
    if (gd._gramResize) gd._gramResize.disconnect();
    gd._gramResize = null;
  };
}
