"""Background training for the Train page: a thin wrapper over gram.train.Trainer.

A Job runs Trainer.fit in a daemon thread; the registry is module-level, so a job survives reruns,
page switches and new browser tabs of the same server. Pages poll `job.snapshot()`; `stop()` asks fit
to stop after the current optimiser step (fit then saves); `resume()` continues a stopped job's
checkpoint with Trainer.resume. Every job writes to its own directory under state.runs_root(), so its
checkpoint appears in the sidebar as soon as it is first saved.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from gram.config import Config
from gram.recipes import default_config
from gram.train import Trainer

_JOBS: dict[str, "Job"] = {}
_LOCK = threading.Lock()


@dataclass
class Job:
    name: str
    out: Path
    steps: int
    task: str
    mode: str
    status: str = "starting"  # starting | running | stopping | stopped | done | error
    error: str = ""
    warning: str = ""
    history: list = field(default_factory=list)
    step: int = 0
    started: float = field(default_factory=time.time)
    trainer: Trainer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _save: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _step_times: list = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    def stop(self) -> None:
        if self.running:
            self.status = "stopping"
            self._stop.set()

    def request_save(self) -> None:
        self._save.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def seconds_left(self) -> float | None:
        t = self._step_times[-30:]
        if len(t) < 2:
            return None
        per = (t[-1] - t[0]) / (len(t) - 1)
        return max(0.0, per * (self.steps - self.step))

    def snapshot(self) -> dict:
        return {"status": self.status, "step": self.step, "steps": self.steps, "history": list(self.history),
                "error": self.error, "warning": self.warning, "eta": self.seconds_left(), "out": str(self.out)}

    # --- the thread -----------------------------------------------------------------------------
    def _callback(self, log: dict) -> None:
        self.history.append(log)
        if "loss" in log:
            self.step = int(log["step"])
            self._step_times.append(time.perf_counter())
        if self._save.is_set() and self.trainer is not None:
            self._save.clear()
            self.trainer.save()

    def _run(self, make_trainer) -> None:
        try:
            self.trainer = make_trainer()
            self.step = self.trainer.step
            self.status = "running"
            self.trainer.fit(steps=self.steps, callback=self._callback, should_stop=self._stop.is_set,
                             warn=lambda msg: setattr(self, "warning", msg))
            self.status = "stopped" if self._stop.is_set() and self.trainer.step < self.steps else "done"
        except Exception as e:  # shown on the page; the app goes on
            self.status = "error"
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()

    def _start(self, make_trainer) -> "Job":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(make_trainer,), daemon=True, name=f"gram-train-{self.name}")
        self._thread.start()
        return self


def build_config(task: str, mode: str = "gram", overrides: list[str] | None = None) -> Config:
    """The task's default recipe with the page's choices applied (ValueError names a bad one)."""
    cfg = default_config(task)
    cfg.model.mode = mode
    return cfg.override(overrides or []).validate()


def start(cfg: Config, out: Path, name: str | None = None) -> Job:
    out = Path(out)
    name = name or out.name
    with _LOCK:
        old = _JOBS.get(name)
        if old is not None and old.running:
            raise ValueError(f"a training job named {name!r} is already running")
        job = Job(name=name, out=out, steps=cfg.train.steps, task=cfg.train.task, mode=cfg.model.mode)
        _JOBS[name] = job
    return job._start(lambda: Trainer(cfg, out=out))


def resume(name: str, steps: int | None = None) -> Job:
    """Continue a stopped (or finished) job from its saved state, optionally to a new step total."""
    with _LOCK:
        old = _JOBS.get(name)
        if old is None:
            raise ValueError(f"no training job named {name!r}")
        if old.running:
            raise ValueError(f"{name!r} is still running")
        job = Job(name=name, out=old.out, steps=steps or old.steps, task=old.task, mode=old.mode,
                  history=list(old.history))
        _JOBS[name] = job

    def make():
        tr = Trainer.resume(job.out)
        job.history[:] = list(tr.history)
        return tr
    return job._start(make)


def jobs() -> list[Job]:
    return sorted(_JOBS.values(), key=lambda j: j.started, reverse=True)


def get(name: str) -> Job | None:
    return _JOBS.get(name)


def active() -> Job | None:
    for j in jobs():
        if j.running:
            return j
    return None
