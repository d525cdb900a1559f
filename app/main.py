"""GRAM Explorer's server: `streamlit run app/main.py`.

It serves app/explorer.py (navigation, sidebar, pages) as a Streamlit `st.App` whose lifespan starts, at server
start and while the server already answers:
- the imports every page needs, torch above all (~1.5 s on 2 cores), in a thread: otherwise the server's first
  visitor waits for them, since a classic `streamlit run` runs nothing of the app before a session does;
- `python -m app.warm` at the lowest CPU priority, which puts the default view of every page for every shipped
  checkpoint on disk before it is asked for (app.views). GRAM_WARM=0 turns it off (tests, benchmarks).

/_stcore/health answers as soon as the server listens; READY_PATH answers "ok" once the imports are done (503
before, 500 with the error if one failed): a server started is healthy, a server ready opens every page without
waiting for an import.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import streamlit as st
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
READY_PATH = "/gram/ready"
_imported = threading.Event()
_import_error: list[str] = []  # what stopped the imports: a page then meets the same error, in its own words


def _import_pages() -> None:
    try:
        from app import compute, figures, stepfig, training, ui, views  # noqa: F401
        from gram import analysis, cards, tasks  # noqa: F401
    except Exception as e:  # noqa: BLE001 (any of them: the route below says which)
        _import_error.append(f"{type(e).__name__}: {e}")
    _imported.set()


async def _ready(_request) -> PlainTextResponse:
    if not _imported.is_set():
        return PlainTextResponse("importing", status_code=503)
    if _import_error:
        return PlainTextResponse(f"the pages' imports failed: {_import_error[0]}", status_code=500)
    return PlainTextResponse("ok")


def _start_warmer() -> subprocess.Popen | None:
    if os.environ.get("GRAM_WARM", "1") == "0":
        return None
    from app.state import checkpoints_root

    try:
        proc = subprocess.Popen([sys.executable, "-m", "app.warm", "--quiet", "--checkpoints", str(checkpoints_root())],
                                cwd=str(HERE.parent), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: os.nice(19))
    except OSError:  # the views are then made as they are asked for
        return None
    atexit.register(proc.terminate)  # also where uvicorn exits without its lifespan's shutdown (a forced exit)
    return proc


@contextlib.asynccontextmanager
async def lifespan(_app):
    warmer = _start_warmer()  # forked before the import thread starts (preexec_fn in a threaded process is unsafe)
    threading.Thread(target=_import_pages, name="gram-imports", daemon=True).start()
    try:
        yield
    finally:
        if warmer is not None:
            warmer.terminate()


app = st.App(HERE / "explorer.py", lifespan=lifespan, routes=[Route(READY_PATH, _ready)])
