"""Expanding a sweep into runs, grouping runs that can share a compiled program, running them.

A run is identified by a hash of its fully resolved config, so the same settings always get
the same run_id. Runs whose configs differ only in per-run values (seed, c, learning rates)
form one group: one `jit(vmap(...))` program with those values passed as arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wgan_cli import data as datasets
from wgan_cli import metrics
from wgan_cli.config import Config, to_dict, with_values
from wgan_cli.errors import WganError
from wgan_cli.results import ResultsFolder, environment
from wgan_cli.train import HIST_EDGES_REL, Hyper, Program, compiled

#: Config fields passed to the compiled program as per-run arrays rather than constants.
PER_RUN_FIELDS = ("name", "seed", "constraint.c", "optim.critic.lr", "optim.generator.lr")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    config: Config


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    runs: list[dict[str, Any]]
    wall_s: float
    generator_steps: int


def parse_list(text: str, option: str, kind: type) -> list:
    """`"0.001, 0.01"` -> [0.001, 0.01]; every entry a positive, distinct number."""
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise WganError(f"{option}: empty entry in {text!r}")
    values = []
    for item in items:
        try:
            value = kind(item)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise WganError(f"{option}: {item!r} is not {noun}") from None
        if kind is float and not math.isfinite(value):
            raise WganError(f"{option}: {item!r} is not a finite number")
        if value < 0 or (kind is float and value == 0):
            bound = "> 0" if kind is float else ">= 0"
            raise WganError(f"{option}: every value must be {bound}, got {item}")
        if value in values:
            raise WganError(f"{option}: {item} appears twice")
        values.append(value)
    return values


def run_id(cfg: Config) -> str:
    """A stable 12-hex-digit hash of every resolved setting of the run."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def expand(base: Config, cs: list[float] | None, seeds: list[int] | None) -> list[RunSpec]:
    """Every (c, seed) pair as a run; an omitted list keeps the config's own value."""
    runs = []
    for c in cs or [base.constraint.c]:
        for seed in seeds if seeds is not None else [base.seed]:
            cfg = with_values(base, {"constraint.c": c, "seed": seed})
            runs.append(RunSpec(run_id(cfg), cfg))
    return runs


def group_key(cfg: Config) -> str:
    """Runs with equal keys differ only in per-run values and share one compiled program."""
    raw = to_dict(cfg)
    for dotted in PER_RUN_FIELDS:
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return json.dumps(raw, sort_keys=True)


def group_runs(runs: list[RunSpec]) -> list[list[RunSpec]]:
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(group_key(run.config), []).append(run)
    return list(groups.values())


def run_sweep(
    base: Config,
    cs: list[float] | None,
    seeds: list[int] | None,
    out: Path,
    progress: Progress = lambda _: None,
) -> SweepResult:
    """Train every run of the sweep into one new results folder."""
    runs = expand(base, cs, seeds)
    spec, arrays = datasets.load(base.data.dataset, base.data.path)
    folder = ResultsFolder.create(out)
    started = time.time()
    manifest = {"name": base.name, "started": _now(), **environment(), "n_runs": len(runs)}
    folder.write_json("manifest.json", manifest)
    folder.write_yaml(
        "sweep.yaml",
        {
            "config": to_dict(base),
            "grid": {
                "c": [r.config.constraint.c for r in runs],
                "seed": [r.config.seed for r in runs],
            },
        },
    )
    rows = {r.run_id: _run_row(r, status="pending") for r in runs}
    folder.write_runs(list(rows.values()))

    groups = group_runs(runs)
    for i, group in enumerate(groups, 1):
        label = f"group {i}/{len(groups)} ({len(group)} runs)"
        for run, final in zip(
            group, _train_group(group, spec, arrays, folder, label, progress), strict=True
        ):
            rows[run.run_id] = final
        folder.write_runs(list(rows.values()))

    wall = time.time() - started
    folder.write_json("manifest.json", {**manifest, "finished": _now(), "wall_s": wall})
    total_steps = sum(r.config.train.steps for r in runs)
    return SweepResult(out, list(rows.values()), wall, total_steps)


def _train_group(
    group: list[RunSpec],
    spec: datasets.DataSpec,
    arrays: dict[str, np.ndarray],
    folder: ResultsFolder,
    label: str,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Train one group chunk by chunk, writing each chunk's rows as soon as it is done.

    The next chunk is dispatched before the host computes this chunk's exact OT distances,
    so that host work overlaps the device's.
    """
    cfg = group[0].config
    prog = Program.from_config(cfg, spec)
    init, chunk, hist = compiled(prog)
    hp = Hyper(
        c=jnp.array([r.config.constraint.c for r in group], jnp.float32),
        lr_critic=jnp.array([r.config.optim.critic.lr for r in group], jnp.float32),
        lr_gen=jnp.array([r.config.optim.generator.lr for r in group], jnp.float32),
    )
    keys = jnp.stack([jax.random.key_data(jax.random.key(r.config.seed)) for r in group])
    dev_arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    n_chunks = cfg.train.steps // cfg.train.log_every

    t0 = time.time()
    progress(f"{label}: compiling and starting")
    state = init(jax.random.wrap_key_data(keys), hp)
    pending = chunk(state, hp, dev_arrays)
    last: list[dict[str, Any]] = []
    for i in range(n_chunks):
        state, out = pending
        if i + 1 < n_chunks:
            pending = chunk(state, hp, dev_arrays)
        host = jax.device_get(out)
        wall = time.time() - t0
        last = [_metric_row(run, host, r, wall) for r, run in enumerate(group)]
        folder.append_metrics(last)
        progress(_progress_line(label, i + 1, n_chunks, cfg.train.steps, wall, host))

    counts = np.asarray(hist(hp, state))
    folder.write_npz(
        "histograms.npz",
        run_ids=np.array([r.run_id for r in group]),
        layer_names=np.array(metrics.layer_names(state.critic)),
        edges_rel=HIST_EDGES_REL,
        scale=np.asarray(hp.c),
        counts=counts,
    )
    finals = []
    for run, row in zip(group, last, strict=True):
        div = int(row.pop("diverged_step"))
        finals.append(
            _run_row(
                run,
                status="diverged" if div >= 0 else "done",
                diverged_step=div if div >= 0 else None,
                steps_done=row["step"],
                **{k: v for k, v in row.items() if k not in ("step", "run_id")},
            )
        )
    return finals


def _metric_row(run: RunSpec, host: dict[str, np.ndarray], r: int, wall: float) -> dict:
    """One metrics.csv row for run r of the group, with its exact W1 computed here."""
    w1 = metrics.w1_exact(host["real"][r], host["fake"][r])
    row = _run_row(run)
    scalars = ("w_estimate", "critic_loss", "gen_loss", "weight_abs_mean", "weight_abs_max")
    row.update({k: float(host[k][r]) for k in scalars})
    row.update(
        step=int(host["step"][r]),
        critic_updates=int(host["critic_updates"][r]),
        diverged_step=int(host["diverged_step"][r]),
        w1_true=w1,
        lipschitz_ratio=float(host["w_estimate"][r]) / w1 if w1 > 0 else float("nan"),
        clip_frac=float(host["clip_frac"][r]) if run.config.constraint.kind == "clip" else None,
        grad_norm_real=float(host["grad_norm_real"][r]),
        grad_norm_fake=float(host["grad_norm_fake"][r]),
        wall_s=round(wall, 3),
    )
    return row


def _run_row(run: RunSpec, **fields: Any) -> dict[str, Any]:
    cfg = run.config
    return {
        "run_id": run.run_id,
        "constraint": cfg.constraint.kind,
        "c": cfg.constraint.c if cfg.constraint.kind == "clip" else None,
        "gp_lambda": None,
        "seed": cfg.seed,
        **fields,
    }


def _progress_line(label: str, done: int, total: int, steps: int, wall: float, host) -> str:
    step = int(np.max(host["step"]))
    eta = wall / done * (total - done)
    w = ", ".join(f"{v:.3g}" for v in host["w_estimate"])
    return f"{label}: step {step}/{steps}  {wall:6.1f}s elapsed, ~{eta:.0f}s left  W est [{w}]"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
