"""The real `wgan` command in a fresh process, for tests that need what only a new process
gives: XLA's device count (read once, when jax starts), a kill at any moment, several hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: A sweep small enough to train in seconds: 8-unit networks, 4 steps logged twice.
TINY = [
    "critic.hidden=8",
    "generator.hidden=8",
    "train.batch_size=16",
    "train.eval_samples=40",
    "train.steps=4",
    "train.log_every=2",
]


def as_sets(settings: list[str]) -> list[str]:
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in settings for arg in ("--set", item)]


def start_wgan(args: list[str], cache: Path) -> subprocess.Popen:
    """`wgan ARGS...` started in the background, with its own compile cache and no XLA_FLAGS
    of ours (the command sets the host device count itself)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen(
        [sys.executable, "-c", "from wgan_cli.cli import app; app()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_wgan(args: list[str], cache: Path, timeout: float = 300) -> tuple[int, str]:
    """`wgan ARGS...` to the end: its exit code and stderr."""
    proc = start_wgan(args, cache)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err
