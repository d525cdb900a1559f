// The plotly.js app/plot.js draws with: its core (scatter, cartesian axes, shapes, annotations, sliders, buttons)
// and the trace types the app's figures use (app/ui.py's TRACES). A figure with any other goes to st.plotly_chart.
var Plotly = require("plotly.js/lib/core");
Plotly.register([require("plotly.js/lib/bar"), require("plotly.js/lib/heatmap"), require("plotly.js/lib/image")]);
module.exports = Plotly;
