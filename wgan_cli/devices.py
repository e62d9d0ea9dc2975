"""Where a sweep's runs execute: the device mesh over the run axis, and the compile cache.

On a CPU-only machine XLA shows one device; the host-platform device count flag splits the
cores into that many devices so the run axis can be sharded over them like over GPUs. The
flag is read once, when jax starts, so it must be set before anything imports jax: the CLI
calls `use_host_devices` first thing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

HOST_FLAG = "--xla_force_host_platform_device_count"


def use_host_devices(count: int | None) -> None:
    """Ask XLA for `count` CPU devices (default: one per core) unless the user's XLA_FLAGS
    already choose. Has no effect once jax has started, or on accelerator devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    if HOST_FLAG in flags:
        return
    count = count or os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} {HOST_FLAG}={count}".strip()


def stored_run_devices(folder: Path) -> int | None:
    """The device count a sweep ran on (its manifest says), so a resume shards it the same
    way and so computes the same numbers; None where the manifest cannot tell."""
    try:
        count = json.loads((folder / "manifest.json").read_text()).get("run_devices")
    except (OSError, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) and count >= 1 else None


def enable_compile_cache(path: Path | None = None) -> Path:
    """Persist compiled programs on disk, so a second sweep of the same shapes starts without
    compiling (the cache key covers shapes, code, flags and the jax version)."""
    import jax

    cache = path or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wgan-jax"
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache


def padded_size(n_runs: int, n_devices: int) -> int:
    """The run axis length that splits evenly over the devices (padding runs repeat the last
    real run, and their outputs are dropped)."""
    return math.ceil(n_runs / n_devices) * n_devices


class CompileCacheStats:
    """Counts persistent-cache hits and misses while it is installed: the manifest records
    them, so "this sweep compiled nothing" is a fact in the results, not a hope."""

    _EVENTS = {
        "/jax/compilation_cache/cache_hits": "hits",
        "/jax/compilation_cache/cache_misses": "misses",
    }

    def __init__(self) -> None:
        import jax.monitoring

        self.counts = {"hits": 0, "misses": 0}
        jax.monitoring.register_event_listener(self._on_event)

    def _on_event(self, event: str, **_: object) -> None:
        if event in self._EVENTS:
            self.counts[self._EVENTS[event]] += 1
