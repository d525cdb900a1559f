// A Plotly figure drawn by plotly.js's cartesian bundle (app/static, 1.5 MB) instead of st.plotly_chart's full
// one (4.7 MB): the browser evaluates a third of the code before the first chart (docs/recipe.md). Loaded once
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
        resolve(P);
      };
      s.onerror = () => { window.__gramPlotly = null; reject(new Error(`could not load ${bundle}`)); };
      document.head.appendChild(s);
    });
  }
  return window.__gramPlotly;
}

// Stepping. The figure's slider steps and play/pause buttons name its frames for Plotly.animate (st.plotly_chart
// runs them so); here they only move, and a step restyles the traces its frame names: Plotly.animate with redraw
// computes the whole figure twice (its transition's defaults and calc, then the redraw's), restyle once
// (docs/recipe.md). A frame names the one before as its baseframe and carries what changed since; the state at a
// step is its chain merged, as Plotly's computeFrame does.
const isFrameStep = (s) => s.method === "animate" && Array.isArray(s.args) && Array.isArray(s.args[0]) && s.args[0][0] !== null;

function ownStepping(layout) {
  const off = (items) => (items || []).map((s) => (s.method === "animate" ? { ...s, execute: false } : s));
  const out = { ...layout };
  if (layout.sliders) out.sliders = layout.sliders.map((s) => ({ ...s, steps: off(s.steps) }));
  if (layout.updatemenus) out.updatemenus = layout.updatemenus.map((m) => ({ ...m, buttons: off(m.buttons) }));
  return out;
}

function merge(into, from) {  // plain objects deeply, arrays and values replaced
  for (const [k, v] of Object.entries(from)) {
    const plain = v && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v);
    into[k] = plain ? merge(into[k] && typeof into[k] === "object" && !Array.isArray(into[k]) ? { ...into[k] } : {}, v) : v;
  }
  return into;
}

function flatten(obj, prefix, out) {  // {marker: {color: c}} -> {"marker.color": c}, as restyle takes it
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v)) flatten(v, `${prefix}${k}.`, out);
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
    busy = gd._gramPlotly.restyle(gd, update, idx).finally(() => {
      busy = null;
      if (wanted !== null) { const n = wanted; wanted = null; return show(n); }
    });
    return busy;
  };
  const play = async (opts) => {
    const run = ++gd._gramPlaying, slider = gd.layout.sliders[0], names = slider.steps.map((s) => s.args[0][0]);
    const wait = (opts && opts.frame && opts.frame.duration) || 0;
    let k = (slider.active || 0) + 1;
    if (k >= names.length) k = 0;  // at the last step, play starts over
    for (; k < names.length && run === gd._gramPlaying; k++) {
      await show(names[k]);
      if (run !== gd._gramPlaying) break;
      await gd._gramPlotly.relayout(gd, { "sliders[0].active": k });
      await new Promise((r) => setTimeout(r, wait));
    }
  };
  const quiet = (promise) => promise.catch(() => {});  // a figure replaced mid-step has nothing left to draw
  gd.on("plotly_sliderchange", (e) => {
    if (e.interaction && e.step && isFrameStep(e.step)) { gd._gramPlaying++; quiet(show(e.step.args[0][0])); }
  });
  gd.on("plotly_buttonclicked", (e) => {
    const b = e.button;
    if (b.method !== "animate" || !Array.isArray(b.args)) return;
    if (b.args[0] === null) quiet(play(b.args[1]));
    else if (Array.isArray(b.args[0]) && b.args[0][0] === null) gd._gramPlaying++;
  });
  return show;
}

export default function (component) {
  const { parentElement, data, setStateValue } = component;
  let gd = parentElement.querySelector(".gram-plot");
  if (!gd) {
    gd = document.createElement("div");
    gd.className = "gram-plot";
    parentElement.appendChild(gd);
  }
  const width = () => Math.max(200, parentElement.clientWidth || gd.clientWidth || 700);
  const { figure, config, clicks, bundle } = JSON.parse(data);
  plotly(bundle).then((P) => {
    gd._gramPlotly = P;  // the benchmark steps the figure with the instance that drew it
    gd._gramSelect = setStateValue;
    const frames = figure.frames || [];
    const layout = frames.length ? ownStepping(figure.layout) : figure.layout;
    return P.react(gd, { data: figure.data, layout: { ...layout, width: width() }, frames, config }).then(() => {
      setFrames(gd, frames);
      if (frames.length && !gd._gramStep) gd._gramStep = stepper(gd);  // the benchmark steps with it too
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
