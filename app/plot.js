// A Plotly figure drawn by plotly.js's cartesian bundle (app/static, 1.5 MB) instead of st.plotly_chart's full
// one (4.7 MB): the browser evaluates a third of the code before the first chart (docs/recipe.md). Loaded once
// per page; the figure's frames step in the browser as with st.plotly_chart, and with `clicks` a click on a point
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
    return P.react(gd, { data: figure.data, layout: { ...figure.layout, width: width() }, frames: figure.frames || [],
                         config }).then(() => clicks);
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
