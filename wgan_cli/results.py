"""The results folder: the only place a sweep writes, and the only thing `wgan report` reads.

Files that are rewritten (runs.csv, the manifest, arrays) go to a temporary file that is
renamed into place, so a crash leaves the old version or the new one, never half of either.
metrics.csv is append-only and flushed per chunk, so it only ever holds whole rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wgan_cli.errors import WganError

METRIC_COLUMNS = (
    "run_id",
    "constraint",
    "c",
    "gp_lambda",
    "seed",
    "step",
    "critic_updates",
    "critic_loss",
    "gen_loss",
    "w_estimate",
    "w1_true",
    "lipschitz_ratio",
    "clip_frac",
    "weight_abs_mean",
    "weight_abs_max",
    "grad_norm_real",
    "grad_norm_fake",
    "grad_norm_real_max",
    "grad_norm_fake_max",
    "grad_norm_interp",
    "grad_norm_interp_max",
    "modes_covered",
    "high_quality_frac",
    "class_coverage",
    "mean_confidence",
    "inception_score",
    "wall_s",
)
#: The digits score's columns (digits only; see digits_score.py).
DIGITS_SCORE_COLUMNS = ("class_coverage", "mean_confidence", "inception_score")
#: Identify a run in every per-run table.
RUN_KEYS = ("run_id", "constraint", "c", "gp_lambda", "seed")
LAYER_COLUMNS = (
    *RUN_KEYS,
    "step",
    "layer",
    "name",
    "act_grad_norm",
    "weight_grad_norm",
    "clip_frac",
)
SPECTRA_COLUMNS = (*RUN_KEYS, "layer", "name", "top_singular_value", "effective_rank")
RUN_COLUMNS = (
    "run_id",
    "constraint",
    "c",
    "gp_lambda",
    "seed",
    "status",
    "diverged_step",
    "steps_done",
    "wall_s",
    *METRIC_COLUMNS[6:-1],
)


class ResultsFolder:
    """A sweep's output folder; created empty, never written over."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path) -> ResultsFolder:
        """Make a new folder, refusing one that already holds anything."""
        if path.exists() and not path.is_dir():
            raise WganError(f"--out {path} exists and is not a folder; pick another --out")
        if (path / "sweep.yaml").exists():
            raise WganError(
                f"results folder {path} already holds a sweep: finish it with "
                f"`wgan sweep --resume {path}`, or pick another --out"
            )
        if path.exists() and any(path.iterdir()):
            raise WganError(
                f"results folder {path} already exists and is not empty; pick another --out"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise WganError(f"cannot write results folder {path}: {exc.strerror}") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> ResultsFolder:
        """An existing sweep's folder, to resume it."""
        if not path.is_dir():
            raise WganError(f"--resume {path}: no such folder")
        if not (path / "sweep.yaml").is_file():
            raise WganError(f"--resume {path}: no sweep.yaml there, so no sweep to resume")
        if not os.access(path, os.W_OK):
            raise WganError(f"--resume {path}: the folder is not writable")
        return cls(path)

    def read_yaml(self, name: str) -> Any:
        try:
            return yaml.safe_load((self.path / name).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise WganError(f"{self.path / name} is unreadable: {exc}") from None

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WganError(f"{self.path / name} is unreadable: {exc}") from None

    def read_runs(self) -> list[dict[str, str]]:
        """runs.csv's rows as written (text cells), so that rewriting them changes nothing."""
        try:
            with open(self.path / "runs.csv", newline="") as fh:
                return list(csv.DictReader(fh))
        except OSError as exc:
            raise WganError(f"{self.path / 'runs.csv'} is unreadable: {exc.strerror}") from None

    def write_yaml(self, name: str, data: Any) -> None:
        self._atomic_write(name, yaml.safe_dump(data, sort_keys=False).encode())

    def write_json(self, name: str, data: Any) -> None:
        self._atomic_write(name, (json.dumps(data, indent=2, default=str) + "\n").encode())

    def write_runs(self, rows: Sequence[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_clean(r) for r in rows)
        self._atomic_write("runs.csv", buf.getvalue().encode())

    def append_rows(
        self, name: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]
    ) -> None:
        """Append whole rows to a CSV and flush them to disk before returning."""
        target = self.path / name
        new = not target.exists()
        with open(target, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(_clean(r) for r in rows)
            fh.flush()
            os.fsync(fh.fileno())

    def write_bytes(self, name: str, payload: bytes) -> None:
        self._atomic_write(name, payload)

    def write_npz(self, name: str, compress: bool = True, **arrays: np.ndarray) -> None:
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        self._atomic_write(name, buf.getvalue())

    def _atomic_write(self, name: str, payload: bytes) -> None:
        target = self.path / name
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """CSV-friendly values: numpy scalars to Python, NaN and None to empty cells."""
    out = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and value != value):
            value = ""
        elif isinstance(value, float):
            value = repr(value)
        out[key] = value
    return out


def environment() -> dict[str, Any]:
    """Versions, devices and source commit: what a reader needs to rerun the numbers."""
    import flax
    import jax
    import optax

    from wgan_cli import __version__

    return {
        "wgan": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
    }


def _git_commit() -> str | None:
    """The commit of the wgan source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
