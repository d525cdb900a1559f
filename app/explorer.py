"""GRAM Explorer's script, which `streamlit run app/main.py` serves (app/main.py prepares the server).

Navigation over the files in the top-level pages/ directory; a sidebar with task, mode, checkpoint
(shipped, trained in this app, uploaded) and seed, shared with every page through app.state and bound
to the URL so a view can be shared and reopened exactly.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import compute, state, ui, views
from gram.tasks import task_names

ROOT = Path(__file__).resolve().parent.parent

st.set_page_config(page_title="GRAM Explorer", page_icon=":material/all_inclusive:", layout="wide",
                   initial_sidebar_state="expanded")
ui.css()

PAGES = [
    ("tour", "Tour", ":material/school:"),
    ("train", "Train", ":material/model_training:"),
    ("recursion", "Recursion", ":material/replay:"),
    ("trajectories", "Trajectories", ":material/scatter_plot:"),
    ("selection", "Selection", ":material/how_to_vote:"),
    ("coverage", "Coverage", ":material/grid_view:"),
    ("generation", "Generation", ":material/auto_awesome:"),
]
pages = {name: st.Page(str(ROOT / "pages" / f"{name}.py"), title=title, icon=icon, url_path=name,
                       default=name == "tour") for name, title, icon in PAGES}
ui.PAGES.clear()
ui.PAGES.update(pages)
current = st.navigation({"Explore": [pages[n] for n in ("tour", "recursion", "trajectories", "selection",
                                                         "coverage", "generation")],
                         "Build": [pages["train"]]})

# --- sidebar ------------------------------------------------------------------------------------
state.initial_params()  # remember the link this session was opened with
pending = st.session_state.pop("_pending", None)  # set by buttons that change sidebar widgets
if pending:
    for k, v in pending.items():
        st.session_state[k] = v

# a lesson link (?lesson=true) opens one focused view: no sidebar, no advanced panels, as TensorFlow Playground does
lesson = st.session_state[ui.state_key("g", "lesson", False, lambda v: v.lower() in ("1", "true"))]
if lesson:
    st.html("<style>[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'], "
            "[data-testid='stExpander'] {display: none !important;}</style>")
tasks = task_names()
with st.sidebar:
    st.html("<div class='gram-brand'>GRAM <span>Explorer</span></div>")
    task = st.selectbox("Task", tasks, key=ui.state_key("g", "task", "nqueens7" if "nqueens7" in tasks else tasks[0],
                                                        valid=lambda v: v in tasks),
                        help="nqueens7 is the demo task: small boards learn in minutes on a CPU.")
    mode = st.selectbox("Mode", state.MODES, format_func=lambda m: state.MODE_LABELS[m],
                        key=ui.state_key("g", "mode", "gram", valid=lambda v: v in state.MODES),
                        help="Which kind of recursion to inspect; side-by-side views pick a partner automatically.")
    found = state.discover(task)
    mine = [c for c in found if c.mode == mode]
    names = [Path(c.path).name for c in mine]
    ck = None
    if mine:
        name = st.selectbox("Checkpoint", names, format_func=lambda n: mine[names.index(n)].label,
                            key=ui.state_key("g", "ckpt", names[0], valid=lambda v: v in names))
        ck = mine[names.index(name)]
        st.caption(state.card_summary(state._read_card(Path(ck.path)) or {}))
    else:
        others = sorted({c.mode for c in found})
        st.warning(f"No {mode} checkpoint for {task}." + (f" Available modes: {', '.join(others)}." if others else ""),
                   icon=":material/info:")
    seed = st.number_input("Seed", 0, 2**31 - 1, key=ui.state_key("g", "seed", 0, int, valid=lambda v: 0 <= v < 2**31),
                           help="Every random draw on every page derives from this seed.")
    with st.expander("Upload a checkpoint", icon=":material/upload:"):
        files = st.file_uploader("model.safetensors, config.json, card.json", accept_multiple_files=True,
                                 type=["safetensors", "json"], key="upload")
        if files:
            d, err = state.store_upload(files)
            if err:
                st.error(err, icon=":material/error:")
            else:
                up = state._read_card(Path(d)) or {}
                if up.get("task") != task:
                    st.error(f"This checkpoint was trained for task {up.get('task')!r}, not {task!r}.",
                             icon=":material/error:")
                    if up.get("task") in tasks and st.button(f"Switch to {up.get('task')}"):
                        st.session_state["_pending"] = {"g_task": up["task"], "g_mode": up.get("mode", "gram"),
                                                        "g_ckpt": Path(d).name}
                        st.rerun()
                elif st.session_state.get("_upload_selected") != d:
                    # select the new upload once; afterwards the user may pick anything else
                    st.session_state["_upload_selected"] = d
                    st.session_state["_pending"] = {"g_mode": up.get("mode", "gram"), "g_ckpt": Path(d).name}
                    st.rerun()
                else:
                    st.success(f"Uploaded {Path(d).name} ({up.get('mode')}, {up.get('steps', '?')} steps)")
    from app import training

    job = training.active()
    if job is not None:
        st.progress(job.step / max(1, job.steps), text=f"training {job.name}: {job.step}/{job.steps}")
    st.html("<div class='gram-foot'>Generative Recursive Reasoning Models · offline · CPU-first</div>")

st.session_state["_selection"] = {"task": task, "mode": mode, "ckpt": ck, "seed": int(seed)}
notices = st.container()  # warnings about the link this session was opened with, shown above the page
try:
    with views.abandon_when(compute.session_gone):  # a closed tab's views stop computing
        current.run()
finally:
    with notices:
        state.url_warnings()
    state.sync_url()
