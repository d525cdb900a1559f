"""Shared app state: where checkpoints live, which one is selected, and page state bound to the URL.

Checkpoint sources (all hold model.safetensors + config.json + card.json):
    shipped   $GRAM_CHECKPOINTS (default <repo>/checkpoints)/<task>[-<mode>]/
    trained   $GRAM_APP_RUNS (default <repo>/runs/app)/<name>/   -- written by the Train page
    uploaded  <tmp>/gram-explorer-uploads/session-<pid>-<random>/upload-<digest>/, remembered in the session

Uploads are deleted when no longer needed: a session keeps its last UPLOADS_KEPT (a new one deletes the
oldest), a rejected upload is deleted at once, a session's folder goes with the session (Streamlit drops a
session's state two minutes after its tab closes) or when the server exits, and the folders of a server that
was killed are swept at the next upload.

URL binding: `bind(key, default, cast)` seeds a widget's session-state value from `?key=...` once per
session; `sync_url()` writes every bound value back to st.query_params at the end of a run, so the
address bar always reproduces the view.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
MODES = ("gram", "deterministic", "noise", "flat")
MODE_LABELS = {"gram": "GRAM (learned guidance)", "deterministic": "Deterministic (TRM-like)",
               "noise": "Noise only", "flat": "Flat loop"}
CKPT_FILES = ("model.safetensors", "config.json", "card.json")
UPLOADS_KEPT = 3  # uploaded checkpoints a session keeps on disk


def checkpoints_root() -> Path:
    return Path(os.environ.get("GRAM_CHECKPOINTS", ROOT / "checkpoints"))


def runs_root() -> Path:
    return Path(os.environ.get("GRAM_APP_RUNS", ROOT / "runs" / "app"))


def uploads_root() -> Path:
    return Path(tempfile.gettempdir()) / "gram-explorer-uploads"


@dataclass(frozen=True)
class Ckpt:
    label: str
    path: str
    source: str  # shipped | trained | uploaded
    task: str
    mode: str

    @property
    def key(self) -> str:
        """Cache key: the path and the weights' modification time (a re-save invalidates caches)."""
        p = Path(self.path) / "model.safetensors"
        return f"{self.path}@{p.stat().st_mtime_ns if p.exists() else 0}"


def _read_card(d: Path) -> dict | None:
    """The card of the checkpoint in d, without its badly typed fields (gram.cards.check_card), task and mode
    filled in from its config; None when d holds no checkpoint."""
    from gram.cards import check_card

    try:
        card = json.loads((d / "card.json").read_text())
        cfg = json.loads((d / "config.json").read_text())
        if not (d / "model.safetensors").is_file() or not isinstance(card, dict):
            return None
        card, _ = check_card(card)
        card.setdefault("mode", cfg.get("model", {}).get("mode", "gram"))
        card.setdefault("task", cfg.get("train", {}).get("task", ""))
        return card
    except (OSError, ValueError, AttributeError):
        return None


def card_summary(card: dict) -> str:
    """'0.18M params · 1,000 steps · test accuracy, depth 32: 85%', from what the card holds that reads."""
    bits = []
    p, steps = card.get("parameters"), card.get("steps")
    if isinstance(p, (int, float)) and not isinstance(p, bool) and p == p:
        bits.append(f"{p / 1e6:.2f}M params")
    if isinstance(steps, int) and not isinstance(steps, bool):
        bits.append(f"{steps:,} steps")
    acc = card_accuracy(card)
    if acc:
        bits.append(f"{acc[0]}: {acc[1]}")
    return " · ".join(bits)


def card_accuracy(card: dict) -> tuple[str, str] | None:
    """(label, value) of a card's headline accuracy: its test evaluation (`gram eval --card`) when it has one,
    else the one-sample check at the end of training (for unconditional Sudoku: 0% at depth 8, 97% at 128)."""
    from gram.cards import card_eval
    try:
        m = card_eval(card)
        if m:
            return f"test accuracy, depth {m['n_sup']}", f"{100 * m['accuracy']:.0f}%"
        acc = card["metrics"]["held_out_prior_accuracy_1_sample"]
        return "held-out accuracy, 1 sample", f"{100 * acc:.0f}%"
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def discover(task: str) -> list[Ckpt]:
    """Every usable checkpoint for `task`: shipped first, then trained here, then uploaded."""
    out: list[Ckpt] = []
    root = checkpoints_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and (d.name == task or d.name.startswith(task + "-")):
                card = _read_card(d)
                if card and card.get("task") == task:
                    out.append(Ckpt(f"{d.name} (shipped)", str(d), "shipped", task, card["mode"]))
    runs = runs_root()
    if runs.is_dir():
        for d in sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            card = _read_card(d) if d.is_dir() else None
            if card and card.get("task") == task:
                out.append(Ckpt(f"{d.name} (trained here, {card.get('steps', '?')} steps)", str(d), "trained", task,
                                card["mode"]))
    uploads = st.session_state.get("_uploads")
    for up in uploads.paths if uploads else []:
        card = _read_card(Path(up))
        if card and card.get("task") == task:
            out.append(Ckpt(f"{Path(up).name} (uploaded)", up, "uploaded", task, card["mode"]))
    return out


class SessionUploads:
    """A session's upload folder (in its state), deleted with it: when Streamlit drops the session's state, or
    at server exit."""

    def __init__(self):
        root = uploads_root()
        root.mkdir(parents=True, exist_ok=True)
        sweep_uploads(root)
        # named session-<pid>-<random>: gram.checkpoint's liveness check reads the pid
        self.dir = Path(tempfile.mkdtemp(prefix=f"session-{os.getpid()}-", dir=root))
        self.paths: list[str] = []  # its uploads, oldest first
        self.remove = weakref.finalize(self, shutil.rmtree, str(self.dir), ignore_errors=True)

    def add(self, d: Path) -> None:
        """Remember upload d; past UPLOADS_KEPT, the oldest is deleted."""
        if str(d) not in self.paths:
            self.paths.append(str(d))
        while len(self.paths) > UPLOADS_KEPT:
            shutil.rmtree(self.paths.pop(0), ignore_errors=True)


def sweep_uploads(root: Path) -> None:
    """Delete the upload folders of servers no longer running (killed before they could)."""
    from gram.checkpoint import _alive

    for d in root.iterdir():
        if d.is_dir() and not _alive(d):
            shutil.rmtree(d, ignore_errors=True)


def _session_uploads() -> SessionUploads:
    if "_uploads" not in st.session_state:
        st.session_state["_uploads"] = SessionUploads()
    return st.session_state["_uploads"]


def store_upload(files: list) -> tuple[str | None, str | None]:
    """Uploaded files -> (checkpoint dir, None) or (None, error message). Never raises. The files stay in the
    uploader across reruns: one already stored is not written or loaded again."""
    from gram.cards import check_card
    from gram.checkpoint import CheckpointError, load_checkpoint

    by_name = {f.name: f for f in files}
    missing = [n for n in CKPT_FILES if n not in by_name]
    if missing:
        return None, (f"A checkpoint is the three files {', '.join(CKPT_FILES)}; missing: {', '.join(missing)}. "
                      "Select all three at once.")
    data = {n: by_name[n].getvalue() for n in CKPT_FILES}
    digest = hashlib.sha256(b"".join(data[n] for n in CKPT_FILES)).hexdigest()[:10]
    ups = _session_uploads()
    d = ups.dir / f"upload-{digest}"
    if str(d) in ups.paths and d.is_dir():
        return str(d), None
    try:
        d.mkdir(parents=True, exist_ok=True)
        for n, b in data.items():
            (d / n).write_bytes(b)
        _, _, card = load_checkpoint(d)
        error = None if check_card(card)[0].get("task") else "That checkpoint's card.json names no task."
    except CheckpointError as e:
        error = f"That upload is not a usable checkpoint: {e}"
    except Exception as e:  # anything else a foreign file can provoke, a full disk included
        error = f"That upload is not a usable checkpoint ({type(e).__name__}: {e})"
    if error:
        shutil.rmtree(d, ignore_errors=True)
        return None, error
    ups.add(d)
    return str(d), None


def presets(task: str) -> list[dict]:
    from app.views import presets as read

    return read(task)


# --- URL binding ----------------------------------------------------------------------------
def _bound() -> dict:
    return st.session_state.setdefault("_bound", {})


def bind(key: str, default: Any, cast: Callable[[str], Any] = str, valid: Callable[[Any], bool] | None = None) -> Any:
    """Seed st.session_state[key] from ?key= (once per session), else from the last value this session held,
    else `default`. An unreadable URL value falls back to the default with a warning, never an exception."""
    bound = _bound()
    keep = st.session_state.setdefault("_keep", {})
    if key not in st.session_state:
        value = keep.get(key, default)
        raw = initial_params().get(key)
        seeded = st.session_state.setdefault("_seeded", set())
        if raw is not None and key not in seeded:
            try:
                v = cast(raw)
                if valid is not None and not valid(v):
                    raise ValueError
                value = v
            except (ValueError, TypeError):
                st.session_state.setdefault("_url_warnings", []).append(
                    f"Ignored the link's {key}={raw!r}: not a valid value; using {default!r}.")
        seeded.add(key)
        st.session_state[key] = value
    elif valid is not None and not valid(st.session_state[key]):
        st.session_state[key] = default
    bound[key] = True
    return st.session_state[key]


def initial_params() -> dict:
    """The query parameters the session was opened with (a shared link), kept so that a page opened later in
    the session still finds its own parameters after other pages rewrote the URL."""
    if "_initial_qp" not in st.session_state:
        try:
            st.session_state["_initial_qp"] = {k: st.query_params.get(k) for k in st.query_params.keys()}
        except Exception:
            st.session_state["_initial_qp"] = {}
    return st.session_state["_initial_qp"]


def sync_url() -> None:
    """Write the bound values of this run to the URL and remember them across page switches."""
    keep = st.session_state.setdefault("_keep", {})
    params = {}
    for key in list(_bound()):
        if key in st.session_state:
            v = st.session_state[key]
            keep[key] = v
            params[key] = str(v).lower() if isinstance(v, bool) else str(v)
    try:
        if dict(st.query_params) != params:
            st.query_params.from_dict(params)
    except Exception:  # the URL is a convenience; never let it break a page
        pass
    st.session_state["_bound"] = {}


def set_url(key: str, value) -> None:
    """Update one bound value in the URL from inside a fragment (a fragment rerun skips sync_url)."""
    st.session_state.setdefault("_keep", {})[key] = value
    try:
        if st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)
    except Exception:
        pass


def url_warnings() -> None:
    for w in st.session_state.pop("_url_warnings", []):
        st.warning(w)


# --- the sidebar's selection, read by pages ---------------------------------------------------
def selection() -> dict:
    """{'task', 'ckpt' (Ckpt or None), 'mode', 'seed'} as chosen in the sidebar."""
    return st.session_state.get("_selection", {"task": "nqueens7", "ckpt": None, "mode": "gram", "seed": 0})


def partner(task: str, mode: str, exclude: str | None = None) -> Ckpt | None:
    """A checkpoint of `task` in `mode` (for side-by-side views), shipped preferred."""
    for c in discover(task):
        if c.mode == mode and c.path != exclude:
            return c
    return None
