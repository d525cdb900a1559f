"""One plot style for every figure: the app's (app/figures.py, app/stepfig.py), `gram scale`'s and `gram
reproduce`'s. Plain values; apply() styles a Plotly figure (Plotly is imported by whoever makes the figure)."""
from __future__ import annotations

FONT = "Inter, 'Source Sans Pro', 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRAM = "#7c3aed"  # violet: GRAM
DET = "#f59e0b"  # amber: deterministic
VOTE = "#0ea5e9"
LPRM = "#10b981"
BAD = "#9ca3af"
QUALITATIVE = ["#7c3aed", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#ec4899", "#14b8a6", "#8b5cf6", "#84cc16",
               "#f97316", "#06b6d4", "#a855f7", "#22c55e", "#eab308", "#3b82f6", "#d946ef", "#64748b", "#b45309"]
TEMPLATE = "plotly_white"  # the command line's figures: graph objects, their margins fitted by Plotly
# The app's figures (plain dicts; Plotly.js reads no template by name): plotly_white's axes under the look that
# Streamlit's theme gave st.plotly_chart's figures, written out because app/plot.js draws most of them without it
# (the values are the theme's, read from a figure it drew: grey axis text in Source Sans, no vertical grid, axes
# that fit their labels, a bold title at the left)
_PAGE_FONT = '"Source Sans", sans-serif'
_TEXT, _GRID = "#808495", "#e6eaf1"
# ticklabeloverflow "allow": labels fit by automargin; plotly.js's default ("hide past div") measures every tick
# label of an axis again as each one is placed, quadratic in the labels (docs/recipe.md)
_AXIS = {"gridcolor": _GRID, "linecolor": "#EBF0F8", "zerolinecolor": _GRID, "zerolinewidth": 2, "ticks": "",
         "tickcolor": _GRID, "automargin": True, "ticklabeloverflow": "allow", "tickfont": {"color": _TEXT, "size": 12.75}}
APP_TEMPLATE = {"layout": {
    "colorway": QUALITATIVE, "hovermode": "closest",
    "xaxis": {**_AXIS, "showgrid": False, "zeroline": False,
              "title": {"standoff": 21.25, "font": {"color": _TEXT, "size": 14.875}}},
    "yaxis": {**_AXIS, "ticklabelposition": "outside", "title": {"standoff": 25.5, "font": {"color": _TEXT, "size": 14.875}}},
    "title": {"font": {"family": _PAGE_FONT, "size": 17, "weight": 700, "color": "#2F2D2B"}, "pad": {"l": 4.25},
              "xanchor": "left", "x": 0},
    "legend": {"font": {"size": 12.75, "color": "#262730"}, "title": {"font": {"size": 12.75, "color": _TEXT}},
               "borderwidth": 0, "valign": "top"},
    "margin": {"pad": 8.5},
    "hoverlabel": {"bgcolor": "#FFFFFF", "bordercolor": "rgba(47, 45, 43, 0.2)",
                   "font": {"family": _PAGE_FONT, "size": 12.75, "color": _TEXT}}}}


def color(i: int) -> str:
    """The i-th series' colour."""
    return QUALITATIVE[i % len(QUALITATIVE)]


def layout(title: str | None = None, height: int = 360, **fields) -> dict:
    """The house look as plain layout fields (type, title, height), without the template; `fields` add to them
    or override them."""
    return {"height": height, "font": {"family": FONT, "size": 14, "color": INK},
            **({"title": {"text": title, "x": 0.01, "y": 1 - 12 / height, "yref": "container", "yanchor": "top",
                          "font": {"size": 17}}} if title else {}), **fields}


def apply(fig, title: str | None = None, height: int = 360, **fields):
    """layout() on a Plotly figure, with the template (the command line's figures; the app's are dicts)."""
    fig.update_layout(template=TEMPLATE, **layout(title, height, **fields))
    return fig
