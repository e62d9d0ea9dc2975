"""What resumability costs: the default sweep with its per-chunk checkpoints against the same
sweep with checkpointing switched off, in one process, alternating, so the ratio is measured
under the same machine load.

Run from the repository root:

    .venv/bin/python benchmarks/checkpoint_cost.py [--steps 250] [--repeats 2]

Each sweep is `wgan sweep --c 0.001,0.01,0.1` on the default config (3 runs, MLPs 512 x 3,
batch 256, log_every 50) cut to --steps generator steps, through `wgan_cli.sweep.run_sweep`.
The first sweep compiles and is not timed. Steady seconds per chunk are taken from the
progress callbacks, excluding each sweep's first chunk; the checkpoint's own seconds (state
gathered to the host, written, renamed) are timed around every `checkpoints.save_state` call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from wgan_cli.devices import use_host_devices

# As `wgan sweep` does by default: one XLA device per core (read once, when jax starts).
use_host_devices(None)

from wgan_cli import checkpoints, config
from wgan_cli import sweep as sweep_module
from wgan_cli.sweep import Grid, run_sweep

CS = [0.001, 0.01, 0.1]


def one_sweep(steps: int, out: Path, save: bool) -> tuple[float, list[float], float]:
    """(steady seconds per chunk, seconds of each checkpoint written, its MiB) of a sweep."""
    stamps: list[float] = []
    saves: list[float] = []
    size = [0.0]
    original = checkpoints.save_state

    def timed_save(folder, group, *args, **kwargs) -> None:
        start = time.perf_counter()
        original(folder, group, *args, **kwargs)
        saves.append(time.perf_counter() - start)
        size[0] = (folder.path / "checkpoints" / f"group-{group}.state.npz").stat().st_size

    sweep_module.checkpoints.save_state = timed_save if save else (lambda *a, **k: None)
    try:
        raw = config.load_raw(None, [f"train.steps={steps}"])
        run_sweep(raw, Grid(cs=CS), out, progress=lambda _: stamps.append(time.perf_counter()))
    finally:
        sweep_module.checkpoints.save_state = original
    chunks = stamps[2:]  # stamps[0]: "compiling and starting"; stamps[1]: the first chunk
    return (chunks[-1] - chunks[0]) / (len(chunks) - 1), saves, size[0] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="multiple of 50, >= 150")
    parser.add_argument("--repeats", type=int, default=2, help="timed sweeps of each kind")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wgan-ckpt-bench-"))
    print(f"load average {os.getloadavg()}; work in {work}", flush=True)
    state_mb = one_sweep(args.steps, work / "warm-up", save=True)[2]
    with_ckpt, without, saves = [], [], []
    for i in range(args.repeats):
        chunk, written, _ = one_sweep(args.steps, work / f"on-{i}", save=True)
        with_ckpt.append(chunk)
        saves += written
        without.append(one_sweep(args.steps, work / f"off-{i}", save=False)[0])
        print(f"repeat {i}: {with_ckpt[-1]:.2f} s/chunk with, {without[-1]:.2f} without")
    on, off = statistics.median(with_ckpt), statistics.median(without)
    print(
        f"\nsteady s/chunk: {on:.2f} with checkpoints, {off:.2f} without: ratio {on / off:.3f}"
        f"\ncheckpoint write: median {statistics.median(saves):.3f} s over {len(saves)} writes"
        f" of {state_mb:.1f} MiB ({statistics.median(saves) / off:.1%} of a chunk without)"
        f"\nload average at end {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
