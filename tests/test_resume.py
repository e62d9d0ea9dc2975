"""Sweeps that survive: killed (SIGKILL) at random moments or stopped with Ctrl-C, then
finished with `wgan sweep --resume`, they end with exactly the files of a sweep that was never
stopped: the same rows of every CSV (time columns aside), the same arrays, no row twice.

Every sweep here is a real `wgan` process, so a kill lands wherever the process happens to be:
inside a chunk, while rows are being appended, or while a checkpoint is being written.
"""

from __future__ import annotations

import csv
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from processes import as_sets, start_wgan

SETTINGS = [
    "critic.hidden=64",
    "generator.hidden=64",
    "train.batch_size=64",
    "train.eval_samples=300",
    "train.steps=48",
    "train.log_every=4",
    "train.hist_steps=[8, 24]",
]
#: Two groups (the clip runs, the gp runs), twelve chunks each.
SWEEP = ["sweep", "--constraint", "clip,gp", "--c", "0.01,0.1", "--seeds", "0,1"]
SWEEP += as_sets(SETTINGS)
TABLES = ("runs.csv", "metrics.csv", "layers.csv", "spectra.csv")
ARRAYS = ("histograms.npz", "spectra.npz", "samples.npz")
TIME_COLUMNS = {"wall_s"}


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows as text, time columns dropped: what must match exactly."""
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(fh)]


def assert_same_results(got: Path, want: Path) -> None:
    for name in TABLES:
        assert rows(got / name) == rows(want / name), name
    for name in ARRAYS:
        a, b = np.load(got / name), np.load(want / name)
        assert sorted(a.files) == sorted(b.files), name
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def statuses(folder: Path) -> list[str]:
    with open(folder / "runs.csv", newline="") as fh:
        return [r["status"] for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """The sweep run once, start to end, never stopped."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    code, err = finish(start_wgan([*SWEEP, "--out", str(out)], cache))
    assert code == 0, err
    return out


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_sweep(
    reference: Path, cache: Path, tmp_path: Path
):
    out = tmp_path / "sweep"
    full = size(reference / "metrics.csv")
    rng = random.Random(7)
    # Kill once metrics.csv has grown to random points of its final size: in either group,
    # at whatever the process is doing then (appending rows, checkpointing, training).
    targets = sorted(rng.uniform(0.05, 0.95) * full for _ in range(4))
    proc = start_wgan([*SWEEP, "--out", str(out)], cache)
    killed_unfinished = 0
    for target in targets:
        while proc.poll() is None and size(out / "metrics.csv") < target:
            time.sleep(0.001)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_unfinished += "pending" in statuses(out) or "interrupted" in statuses(out)
        proc = start_wgan(["sweep", "--resume", str(out)], cache)
    code, err = finish(proc)
    assert code == 0, err
    assert killed_unfinished == len(targets)
    assert set(statuses(out)) == {"done"}
    assert_same_results(out, reference)
    assert not list((out / "checkpoints").glob("*.state.npz"))  # finished groups drop theirs

    # Resuming a finished sweep trains nothing and changes no file, the manifest included.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, err = finish(start_wgan(["sweep", "--resume", str(out)], cache))
    assert code == 0, err
    assert "nothing to train" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_ctrl_c_stops_at_a_chunk_boundary_and_says_how_to_resume(
    reference: Path, cache: Path, tmp_path: Path
):
    out = tmp_path / "sweep"
    proc = start_wgan([*SWEEP, "--out", str(out)], cache)
    while proc.poll() is None and size(out / "metrics.csv") < size(reference / "metrics.csv") / 4:
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"interrupted: finish the sweep with `wgan sweep --resume {out}`"
    assert "Traceback" not in err
    assert "interrupted" in statuses(out)
    # Stopped at a boundary: whole rows only, as many per run as the checkpoint holds.
    text = (out / "metrics.csv").read_text()
    assert text.endswith("\n")
    got = rows(out / "metrics.csv")
    want = rows(reference / "metrics.csv")
    assert got == want[: len(got)]

    code, err = finish(start_wgan(["sweep", "--resume", str(out)], cache))
    assert code == 0, err
    assert "resuming at step" in err
    assert_same_results(out, reference)
