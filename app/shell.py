"""What every run of the app sends first, before anything heavy (torch, the model, the data) is imported: the page
settings, the house style, and a hidden figure.

The browser loads and compiles Plotly.js (about 0.7 s of its main thread) only when the first figure of a page
arrives. A tiny hidden figure sent first lets that happen while the server imports torch and computes the page,
instead of after: the page's own figures then draw as soon as they arrive.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PRELOAD_KEY = "gram_preload_fig"
STYLE = Path(__file__).resolve().parent.parent / "assets" / "style.css"
# the smallest figure Streamlit draws: Plotly.js loads for it like for any other
PRELOAD = {"data": [{"type": "scatter", "x": [0], "y": [0], "mode": "markers", "hoverinfo": "skip"}], "layout": {"height": 10, "width": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}}


def start() -> None:
    st.set_page_config(page_title="GRAM Explorer", page_icon=":material/all_inclusive:", layout="wide",
                       initial_sidebar_state="expanded")
    try:
        st.markdown(f"<style>{STYLE.read_text()}</style>", unsafe_allow_html=True)
    except OSError:
        pass
    with st.container(key="gram_preload"):  # hidden by style.css, out of the page's flow
        st.plotly_chart(PRELOAD, key=PRELOAD_KEY, config={"staticPlot": True, "displayModeBar": False})
