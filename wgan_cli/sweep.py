"""Expanding a sweep into runs, grouping runs that can share a compiled program, running them.

A run is identified by a hash of its fully resolved config, so the same settings always get
the same run_id. Runs whose configs differ only in per-run values (seed, c, learning rates)
form one group: one `jit(vmap(...))` program with those values passed as arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from wgan_cli import checkpoints, digits_score, metrics
from wgan_cli import data as datasets
from wgan_cli.config import CONSTRAINTS, Config, is_set, resolve, to_dict
from wgan_cli.devices import CompileCacheStats, padded_size
from wgan_cli.errors import Interrupted, WganError
from wgan_cli.results import (
    DIGITS_SCORE_COLUMNS,
    LAYER_COLUMNS,
    METRIC_COLUMNS,
    SPECTRA_COLUMNS,
    ResultsFolder,
    environment,
)
from wgan_cli.train import (
    FAMILIES,
    HIST_EDGES_REL,
    SURFACE_AXIS,
    Hyper,
    Program,
    clip_coverage,
    compiled,
)

#: Config fields passed to the compiled program as per-run arrays rather than constants.
PER_RUN_FIELDS = (
    "name",
    "seed",
    "constraint.c",
    "constraint.gp_lambda",
    "optim.critic.lr",
    "optim.generator.lr",
)

Progress = Callable[[str], None]
#: Generated images kept per run at each histogram step, for the report's image grids.
GRID_SAMPLES = 64


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


@dataclass(frozen=True)
class Grid:
    """What a sweep spans; None keeps the config's own value."""

    arms: list[str] | None = None
    cs: list[float] | None = None
    gp_lambdas: list[float] | None = None
    seeds: list[int] | None = None


def expand(raw: dict[str, Any], grid: Grid) -> list[RunSpec]:
    """One run per clip c, per gp λ, and one per other arm, each times every seed.

    Each run resolves the user's settings over its own arm's defaults (Adam for gp and sn).
    """
    arms = grid.arms or [resolve(raw).constraint.kind]
    settings = {
        "clip": [{"constraint.c": c} for c in grid.cs or [None]],
        "gp": [{"constraint.gp_lambda": lam} for lam in grid.gp_lambdas or [None]],
    }
    runs = []
    for kind in arms:
        for setting in settings.get(kind, [{}]):
            for seed in grid.seeds if grid.seeds is not None else [None]:
                values = {"constraint.kind": kind, "seed": seed, **setting}
                cfg = resolve(raw, {k: v for k, v in values.items() if v is not None})
                runs.append(RunSpec(run_id(cfg), cfg))
    return runs


def check_grid(raw: dict[str, Any], grid: Grid) -> list[str]:
    """Refuse sweep options that no arm would use; return warnings for such config settings.

    A setting that does nothing must never pass silently: on the command line it is an
    error, in a config file (which may serve other sweeps) a warning.
    """
    arms = grid.arms or [resolve(raw).constraint.kind]
    for arm in arms:
        if arm not in CONSTRAINTS:
            known = ", ".join(CONSTRAINTS)
            raise WganError(f"--constraint: unknown arm {arm!r}; choose from {known}")
    if len(set(arms)) != len(arms):
        raise WganError("--constraint: an arm appears twice")
    for option, values, arm in (("--c", grid.cs, "clip"), ("--gp-lambda", grid.gp_lambdas, "gp")):
        if values is not None and arm not in arms:
            raise WganError(f"{option} applies to the {arm} arm, which this sweep does not run")
    warnings = []
    unused = (("constraint.c", "clip"), ("constraint.clip", "clip"), ("constraint.gp_lambda", "gp"))
    for key, arm in unused:
        if is_set(raw, key) and arm not in arms:
            warnings.append(f"{key} is set but does nothing: no {arm} arm in this sweep")
    if "clip" in arms:
        cfg = resolve(raw, {"constraint.kind": "clip"})
        if "adam" in (cfg.optim.critic.name, cfg.optim.generator.name):
            warnings.append(
                "Adam's momentum with weight clipping: the WGAN paper reports it unstable"
            )
    return warnings


def group_key(cfg: Config) -> str:
    """Runs with equal keys differ only in per-run values and share one compiled program."""
    raw = to_dict(cfg)
    raw["constraint"]["kind"] = FAMILIES[cfg.constraint.kind]
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


def host_share(runs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Host `index` of `count`'s runs: a contiguous slice of every group, the slices as even
    as they can be, so that every host has about the same work in every group."""
    mine = []
    for group in group_runs(runs):
        size, extra = divmod(len(group), count)
        start = index * size + min(index, extra)
        mine += group[start : start + size + (index < extra)]
    return mine


def prepare(
    runs: list[RunSpec], devices: int | None
) -> tuple[Mesh, tuple[datasets.DataSpec, dict[str, np.ndarray]], list[list[RunSpec]]]:
    """The mesh, the data and the groups, or the user's mistake before any folder exists:
    too many devices, an unreadable data file, a batch or network that cannot fit the data."""
    mesh = run_mesh(devices)
    base = runs[0].config
    spec, arrays = datasets.load(base.data.dataset, base.data.path)
    datasets.check_batch(spec, arrays, base.train.batch_size, base.data.path)
    groups = group_runs(runs)
    for group in groups:
        Program.from_config(group[0].config, spec)
    return mesh, (spec, arrays), groups


def run_sweep(
    raw: dict[str, Any],
    grid: Grid,
    out: Path,
    progress: Progress = lambda _: None,
    devices: int | None = None,
    host: tuple[int, int] | None = None,
) -> SweepResult:
    """Train every run of the sweep into one new results folder, each group's runs sharded
    over `devices` of this process's devices (default: all of them).

    With `host` = (index, count), only that host's share of the runs (see host_share).
    """
    runs = expand(raw, grid)
    if host is not None:
        runs = host_share(runs, *host)
    mesh, (spec, arrays), groups = prepare(runs, devices)
    base = runs[0].config
    folder = ResultsFolder.create(out)
    manifest = {
        "name": base.name,
        "started": now(),
        **environment(),
        "n_runs": len(runs),
        "run_devices": mesh.size,
    }
    clip_runs = [r for r in runs if r.config.constraint.kind == "clip"]
    if clip_runs:
        manifest["clip_coverage"] = clip_coverage(Program.from_config(clip_runs[0].config, spec))
    folder.write_json("manifest.json", manifest)
    share = {"host": {"index": host[0], "count": host[1]}} if host is not None else {}
    folder.write_yaml("sweep.yaml", sweep_record(raw, grid, runs, **share))
    rows = {r.run_id: _run_row(r, status="pending") for r in runs}
    folder.write_runs(list(rows.values()))
    return _run_groups(folder, groups, rows, manifest, (spec, arrays), mesh, progress)


def sweep_record(
    raw: dict[str, Any], grid: Grid, runs: list[RunSpec], **extra: Any
) -> dict[str, Any]:
    """sweep.yaml: what the user set, the grid, and every run's id and resolved config, from
    which `--resume` expands the same runs again."""
    return {
        "user_settings": raw,
        "grid": {k: v for k, v in vars(grid).items() if v is not None},
        **extra,
        "runs": [{"run_id": r.run_id, **to_dict(r.config)} for r in runs],
    }


def resume_sweep(
    path: Path, progress: Progress = lambda _: None, devices: int | None = None
) -> SweepResult:
    """Finish the sweep stored in `path`: finished groups are kept as they are, the others
    go on from their newest checkpoint (or from the start, if they never wrote one).

    The runs are expanded again from sweep.yaml and must hash to the stored run ids, so a
    setting that now resolves differently never continues old results.
    """
    folder = ResultsFolder.open(path)
    stored = folder.read_yaml("sweep.yaml")
    try:
        raw, grid = stored["user_settings"], Grid(**stored["grid"])
        stored_ids = [r["run_id"] for r in stored["runs"]]
    except (TypeError, KeyError):
        raise WganError(f"{path / 'sweep.yaml'} does not describe a wgan sweep") from None
    if "hosts" in stored:
        raise WganError(
            f"--resume {path}: it was swept on {stored['hosts']} hosts; resume it on as many "
            "(--num-hosts, --host-id, --coordinator)"
        )
    runs = expand(raw, grid)
    if "host" in stored:
        runs = host_share(runs, stored["host"]["index"], stored["host"]["count"])
    if [r.run_id for r in runs] != stored_ids:
        raise WganError(
            f"--resume {path}: its runs no longer resolve to the settings they started with "
            "(another wgan version?); start a new sweep instead"
        )
    rows: dict[str, dict[str, Any]] = {r["run_id"]: r for r in folder.read_runs()}
    if set(rows) != set(stored_ids):
        raise WganError(f"--resume {path}: runs.csv does not list this sweep's runs")
    if all(_finished(row) for row in rows.values()):
        progress("every run had already finished: nothing to train, nothing rewritten")
        return SweepResult(path, list(rows.values()), 0.0, 0)
    for run_id, row in rows.items():
        if not _finished(row):
            rows[run_id] = {**row, "status": "pending"}
    mesh, data, groups = prepare(runs, devices)
    manifest = folder.read_json("manifest.json")
    resumed = [*manifest.get("resumed", []), {"at": now(), "command": environment()["command"]}]
    manifest = {**manifest, "resumed": resumed}
    for stale in ("interrupted", "finished", "wall_s"):
        manifest.pop(stale, None)
    folder.write_json("manifest.json", manifest)
    folder.write_runs(list(rows.values()))
    return _run_groups(folder, groups, rows, manifest, data, mesh, progress)


def _run_groups(
    folder: ResultsFolder,
    groups: list[list[RunSpec]],
    rows: dict[str, dict[str, Any]],
    manifest: dict[str, Any],
    data: tuple[datasets.DataSpec, dict[str, np.ndarray]],
    mesh: Mesh,
    progress: Progress,
) -> SweepResult:
    """Train the groups in order, skipping those already finished; each group's end is
    committed by runs.csv, after everything it adds is on disk.

    Before the first unfinished group trains, the append-only CSVs are cut back to its
    checkpoint (or to the end of the last finished group), so rows are never repeated.
    """
    base = groups[0][0].config
    spec, arrays = data
    cache_stats = CompileCacheStats()
    started = time.time()
    parts: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    trained = 0
    try:
        with StopRequest(progress) as stop:
            for i, group in enumerate(groups):
                ids = [r.run_id for r in group]
                if all(_finished(rows[r]) for r in ids):
                    artifacts, sizes = checkpoints.load_done(folder, i, ids)
                    parts.append(artifacts)
                    checkpoints.drop_state(folder, i)
                    continue
                resume_from = checkpoints.load_state(folder, i, ids)
                checkpoints.cut_back(folder, resume_from.sizes if resume_from else sizes)
                label = f"group {i + 1}/{len(groups)} ({len(group)} runs)"
                finals, artifacts, spectra = _train_group(
                    group, i, spec, arrays, folder, label, progress, mesh, resume_from, stop
                )
                done_before = resume_from.chunks * base.train.log_every if resume_from else 0
                trained += len(group) * (base.train.steps - done_before)
                parts.append(artifacts)
                rows.update(zip(ids, finals, strict=True))
                sizes = _commit_group(folder, i, spectra, parts, rows, base)
                if stop.requested and i + 1 < len(groups):
                    raise KeyboardInterrupt
    except BaseException as exc:
        # Ctrl-C or a crash: say which runs did not finish, in runs.csv and the manifest.
        for run_id, row in rows.items():
            if row["status"] == "pending":
                rows[run_id] = {**row, "status": "interrupted"}
        folder.write_runs(list(rows.values()))
        folder.write_json("manifest.json", {**manifest, "interrupted": now()})
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(folder.path) from None
        raise

    wall = time.time() - started
    folder.write_json(
        "manifest.json",
        {**manifest, "finished": now(), "wall_s": wall, "compile_cache": cache_stats.counts},
    )
    return SweepResult(folder.path, list(rows.values()), wall, trained)


def _commit_group(
    folder: ResultsFolder,
    index: int,
    spectra: list[dict[str, Any]],
    parts: list[dict[str, Any]],
    rows: dict[str, dict[str, Any]],
    cfg: Config,
) -> dict[str, int]:
    """Write what a finished group adds, then runs.csv, whose `done` rows are the commit: a
    kill before it resumes the group from its checkpoint, a kill after it keeps the group.
    Returns the CSV sizes after the group, where a later group's resume cuts back to."""
    folder.append_rows("spectra.csv", SPECTRA_COLUMNS, spectra)
    sizes = checkpoints.appended_sizes(folder)
    checkpoints.save_done(folder, index, parts[-1], sizes)
    write_arrays(folder, parts, cfg)
    folder.write_runs(list(rows.values()))
    checkpoints.drop_state(folder, index)
    return sizes


class StopRequest:
    """Ctrl-C asks a sweep to stop at the next chunk boundary, once that chunk's rows and
    checkpoint are on disk; a second Ctrl-C stops at once (the last checkpoint still holds)."""

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self._progress = progress
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._progress("stopping at the end of this chunk (Ctrl-C again to stop now)")


def _finished(row: dict[str, Any]) -> bool:
    return row["status"] in ("done", "diverged")


def _train_group(
    group: list[RunSpec],
    index: int,
    spec: datasets.DataSpec,
    arrays: dict[str, np.ndarray],
    folder: ResultsFolder,
    label: str,
    progress: Progress,
    mesh: Mesh,
    resume_from: checkpoints.GroupState | None,
    stop: StopRequest,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Train one group chunk by chunk, writing each chunk's rows as soon as it is done and
    then a checkpoint (but after the last chunk, where the group's end is the commit).

    The next chunk is dispatched before the host computes this chunk's exact OT distances,
    so that host work overlaps the device's. Returns each run's final runs.csv row, the
    group's arrays (histograms, spectra, surfaces, samples; each with a leading run axis)
    and its spectra.csv rows.
    """
    cfg = group[0].config
    ids = [r.run_id for r in group]
    prog = Program.from_config(cfg, spec)
    init, chunk, final = compiled(prog)
    clip_cs = np.array([_clip_c(r.config) for r in group], np.float32)
    hp = Hyper(
        c=jnp.asarray(clip_cs),
        lr_critic=jnp.array([r.config.optim.critic.lr for r in group], jnp.float32),
        lr_gen=jnp.array([r.config.optim.generator.lr for r in group], jnp.float32),
        gp_lambda=jnp.array([r.config.constraint.gp_lambda for r in group], jnp.float32),
    )
    keys = jnp.stack([jax.random.key_data(jax.random.key(r.config.seed)) for r in group])
    hp, keys, dev_arrays = _place(hp, keys, arrays, mesh)
    n_chunks = cfg.train.steps // cfg.train.log_every
    hist_steps = sorted({*cfg.train.hist_steps, cfg.train.steps})

    t0 = time.time()
    state = init(jax.random.wrap_key_data(keys), hp)
    start, wall0, snapshots, images = 0, 0.0, [], []
    if resume_from is None:
        progress(f"{label}: compiling and starting")
    else:
        state = checkpoints.restore(state, resume_from.leaves)
        start, wall0 = resume_from.chunks, resume_from.wall
        snapshots, images = list(resume_from.snapshots), list(resume_from.images)
        progress(f"{label}: resuming at step {start * cfg.train.log_every}/{cfg.train.steps}")
    pending = chunk(state, hp, dev_arrays)
    names = metrics.layer_names(state.critic["params"])
    scorer = image_scorer(spec, folder)
    last, first = [], 0.0
    for i in range(start, n_chunks):
        state, out = pending
        if i + 1 < n_chunks:
            pending = chunk(state, hp, dev_arrays)
        host = _real_runs(jax.device_get(out), len(group))
        elapsed = time.time() - t0
        wall = wall0 + elapsed
        last = [_metric_row(run, host, r, wall, scorer) for r, run in enumerate(group)]
        folder.append_rows("metrics.csv", METRIC_COLUMNS, last)
        folder.append_rows("layers.csv", LAYER_COLUMNS, _layer_rows(group, host, names))
        if (i + 1) * cfg.train.log_every in hist_steps:
            snapshots.append(host["histograms"])
            images.append(host["fake"][:, :GRID_SAMPLES])
        if i + 1 < n_chunks:
            checkpoints.save_state(folder, index, ids, i + 1, wall, state, snapshots, images)
            if stop.requested:
                raise KeyboardInterrupt
        # The time left is paced by the chunks after this process's first, which alone
        # carries the compilation.
        first = first if i > start else elapsed
        eta = (elapsed - first) / (i - start) * (n_chunks - i - 1) if i > start else math.nan
        progress(_progress_line(label, cfg.train.steps, wall, eta, host))

    ends = _real_runs(jax.device_get(final(state)), len(group))
    artifacts = {
        "run_ids": np.array(ids),
        "layer_names": names,
        "image_shape": spec.image_shape,
        "scale": np.where(np.isfinite(clip_cs), clip_cs, [r["weight_abs_max"] for r in last]),
        "counts": snapshots[-1],
        "counts_at_steps": np.stack(snapshots, axis=1),
        "samples": host["fake"],
        "samples_at_steps": np.stack(images, axis=1),
        "real": host["real"],
        **{f"sv_{n}": sv for n, sv in zip(names, ends["singular_values"], strict=True)},
    }
    if "surface" in ends:
        artifacts["surface"] = ends["surface"]
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
    return finals, artifacts, _spectra_rows(group, names, ends)


def run_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over this process's first `devices` devices (default all) for the run
    axis; under jax.distributed, each host's own devices."""
    available = jax.local_devices()
    if devices is not None and devices > len(available):
        raise WganError(f"--devices {devices}: only {len(available)} devices are available")
    return Mesh(np.array(available[: devices or len(available)]), ("runs",))


def _place(
    hp: Hyper, keys: jax.Array, arrays: dict[str, np.ndarray], mesh: Mesh
) -> tuple[Hyper, jax.Array, dict[str, jax.Array]]:
    """Shard the run axis over the mesh, padding it to a multiple of the device count with
    copies of the last run (dropped again by _real_runs); data sets are replicated."""
    n = keys.shape[0]
    extra = padded_size(n, mesh.size) - n

    def pad(a: jax.Array) -> jax.Array:
        return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)]) if extra else a

    runs = NamedSharding(mesh, PartitionSpec("runs"))
    hp, keys = jax.device_put(jax.tree_util.tree_map(pad, (hp, keys)), runs)
    replicated = NamedSharding(mesh, PartitionSpec())
    return hp, keys, {k: jax.device_put(jnp.asarray(v), replicated) for k, v in arrays.items()}


def _real_runs(tree: Any, n: int) -> Any:
    """Drop the padding runs from host outputs with a leading run axis."""
    return jax.tree_util.tree_map(lambda a: a[:n], tree)


def write_arrays(folder: ResultsFolder, parts: list[dict[str, Any]], cfg: Config) -> None:
    """Rewrite the sweep's array files with every finished group's runs, stacked by run."""
    names, image_shape = parts[0]["layer_names"], parts[0]["image_shape"]
    shared = ("layer_names", "image_shape")
    stack = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in shared}
    hist_steps = sorted({*cfg.train.hist_steps, cfg.train.steps})
    common = {"run_ids": stack["run_ids"]}
    folder.write_npz(
        "histograms.npz",
        **common,
        layer_names=np.array(names),
        edges_rel=HIST_EDGES_REL,
        scale=stack["scale"],
        counts=stack["counts"],
        steps=np.array(hist_steps),
        counts_at_steps=stack["counts_at_steps"],
    )
    folder.write_npz(
        "spectra.npz", **common, **{k: v for k, v in stack.items() if k.startswith("sv_")}
    )
    extra = {"axis": SURFACE_AXIS, "values": stack["surface"]} if "surface" in stack else {}
    if image_shape is not None:
        extra["image_shape"] = np.array(image_shape)
        extra["samples_at_steps"] = stack["samples_at_steps"]
        extra["steps"] = np.array(hist_steps)
    folder.write_npz("samples.npz", **common, samples=stack["samples"], real=stack["real"], **extra)


def image_scorer(
    spec: datasets.DataSpec, folder: ResultsFolder
) -> Callable[[np.ndarray], dict[str, float]] | None:
    """The digits score for generated digits (its classifier fitted once and cached in the
    results folder); None for every other data set, which has no classifier to judge it."""
    if spec.name != "digits":
        return None
    classifier = digits_score.load_or_train(folder.path)

    def score(images: np.ndarray) -> dict[str, float]:
        result = digits_score.score(classifier, images)
        return {k: result[k] for k in DIGITS_SCORE_COLUMNS}

    return score


def _metric_row(
    run: RunSpec,
    host: dict[str, np.ndarray],
    r: int,
    wall: float,
    scorer: Callable[[np.ndarray], dict[str, float]] | None = None,
) -> dict:
    """One metrics.csv row for run r of the group, with its exact W1 (and, for digits, the
    digits score) computed here."""
    w1 = metrics.w1_exact(host["real"][r], host["fake"][r])
    row = _run_row(run)
    if scorer is not None:
        row.update(scorer(host["fake"][r]))
    scalars = [k for k in METRIC_COLUMNS if k in host and host[k].ndim == 1]
    row.update({k: host[k][r].item() for k in scalars})
    row.update(
        w1_true=w1,
        lipschitz_ratio=float(host["w_estimate"][r]) / w1 if w1 > 0 else float("nan"),
        clip_frac=float(host["clip_frac"][r]) if run.config.constraint.kind == "clip" else None,
        diverged_step=int(host["diverged_step"][r]),
        wall_s=round(wall, 3),
    )
    return row


def _layer_rows(group: list[RunSpec], host: dict, names: list[str]) -> list[dict[str, Any]]:
    """layers.csv: per run and layer, gradient norms and the clipping pile-up."""
    rows = []
    for r, run in enumerate(group):
        clip = run.config.constraint.kind == "clip"
        for i, name in enumerate(names):
            act = host["layer_act_grad_norm"][r]
            rows.append(
                _run_row(
                    run,
                    step=int(host["step"][r]),
                    layer=i,
                    name=name,
                    act_grad_norm=float(act[i]) if i < act.shape[0] else None,
                    weight_grad_norm=float(host["layer_weight_grad_norm"][r][i]),
                    clip_frac=float(host["layer_clip_frac"][r][i]) if clip else None,
                )
            )
    return rows


def _spectra_rows(group: list[RunSpec], names: list[str], ends: dict) -> list[dict[str, Any]]:
    """spectra.csv: each final weight matrix's top singular value and effective rank."""
    rows = []
    for r, run in enumerate(group):
        for i, (name, sv) in enumerate(zip(names, ends["singular_values"], strict=True)):
            rows.append(
                _run_row(
                    run,
                    layer=i,
                    name=name,
                    top_singular_value=float(sv[r].max()),
                    effective_rank=float(metrics.effective_rank(sv[r])),
                )
            )
    return rows


def _run_row(run: RunSpec, **fields: Any) -> dict[str, Any]:
    cfg = run.config
    return {
        "run_id": run.run_id,
        "constraint": cfg.constraint.kind,
        "c": cfg.constraint.c if cfg.constraint.kind == "clip" else None,
        "gp_lambda": cfg.constraint.gp_lambda if cfg.constraint.kind == "gp" else None,
        "seed": cfg.seed,
        **fields,
    }


def _clip_c(cfg: Config) -> float:
    """The box the critic is projected into: [-c, c] under clip, unbounded otherwise."""
    return cfg.constraint.c if cfg.constraint.kind == "clip" else math.inf


def _progress_line(label: str, steps: int, wall: float, eta: float, host) -> str:
    """One line per chunk: the step, time spent and left, and every run's W estimate."""
    step = int(np.max(host["step"]))
    w = ", ".join(f"{v:.3g}" for v in host["w_estimate"])
    left = f"~{eta:.0f}s left" if eta == eta else "compiled"
    return f"{label}: step {step}/{steps}  {wall:6.1f}s elapsed, {left}  W est [{w}]"


def now() -> str:
    """The time for manifests: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
