"""Make the default view of every page for every shipped checkpoint, ahead of the first visitor:

    python -m app.warm [--checkpoints DIR] [--quiet]

The app's server starts this once, in the background at the lowest CPU priority, so the app stays usable
while it runs; run it by hand after adding checkpoints, or before timing the app. What it makes is cached
on disk (app.views), so it is done once per machine and checkpoint version.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def shipped(root: Path) -> list[str]:
    """Checkpoint directories under root, the demo task first."""
    dirs = sorted(d for d in root.iterdir() if (d / "model.safetensors").is_file() and (d / "config.json").is_file()) \
        if root.is_dir() else []
    return [str(d) for d in sorted(dirs, key=lambda d: (not d.name.startswith("nqueens7"), d.name))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", default=os.environ.get("GRAM_CHECKPOINTS") or
                    str(Path(__file__).resolve().parent.parent / "checkpoints"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from app import views

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    t0 = time.perf_counter()
    made = views.warm(shipped(Path(args.checkpoints)), log=(lambda s: None) if args.quiet else
                      (lambda s: print(s, file=sys.stderr, flush=True)))
    if not args.quiet:
        print(f"{made} views made in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
