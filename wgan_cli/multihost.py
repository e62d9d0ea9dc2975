"""Sweeps over several hosts with jax.distributed: every host runs the same command, trains its
share of every group on its own devices, and host 0 merges the shares into one results folder.

Runs never exchange anything while they train, so hosts do not train in lock-step over one
global mesh: each host takes a contiguous slice of every group (`sweep.host_share`), shards
it over its own devices as a single host would, and writes only its own runs' rows, into
DIR/hosts/<id>/, a results folder of its own (with its own checkpoints, so each share
resumes on its own). The hosts meet three times through jax.distributed: to agree that
host 0 created DIR, to wait for every share, and to wait for the merge. Host 0 then writes
DIR's runs.csv, metrics.csv, layers.csv, spectra.csv and array files from the shares, runs in
the sweep's order, rows host by host. DIR must be on a file system every host sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wgan_cli import checkpoints
from wgan_cli.errors import WganError
from wgan_cli.results import ResultsFolder, environment
from wgan_cli.sweep import (
    Grid,
    Progress,
    SweepResult,
    expand,
    group_runs,
    host_share,
    now,
    prepare,
    resume_sweep,
    run_sweep,
    sweep_record,
    write_arrays,
)


def initialize(coordinator: str, count: int, index: int) -> None:
    """Join the cluster before any computation; CPU hosts meet through gloo."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    except Exception as exc:  # jax raises a bare RuntimeError/XlaRuntimeError here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WganError(f"--coordinator {coordinator}: could not join the hosts: {first}") from None


def sweep_on_hosts(
    raw: dict[str, Any],
    grid: Grid,
    out: Path,
    host: tuple[int, int],
    progress: Progress,
    devices: int | None = None,
) -> SweepResult:
    """This host's share of the sweep into out/hosts/<index>; host 0 merges them into out."""
    index, count = host
    runs = expand(raw, grid)
    mine = host_share(runs, index, count)
    if mine:  # every host checks the same input, so a mistake stops them all here
        prepare(mine, devices)
    error = None
    if index == 0:
        try:
            folder = ResultsFolder.create(out)
            folder.write_yaml("sweep.yaml", sweep_record(raw, grid, runs, hosts=count))
            folder.write_json("manifest.json", {"started": now(), "hosts": count})
        except WganError as exc:
            error = exc
    _agree(error, f"host 0 could not create {out}")
    share = out / "hosts" / str(index)
    result = None
    if mine:
        result = run_sweep(raw, grid, share, _prefixed(progress, index), devices, host)
    return _meet_and_merge(out, count, index, result, progress)


def resume_on_hosts(
    out: Path, host: tuple[int, int], progress: Progress, devices: int | None = None
) -> SweepResult:
    """Each host resumes its own share; host 0 then merges them again."""
    index, count = host
    stored = ResultsFolder.open(out).read_yaml("sweep.yaml")
    if stored.get("hosts") != count:
        raise WganError(
            f"--resume {out}: it was swept on {stored.get('hosts', 1)} host(s), not {count}"
        )
    share = out / "hosts" / str(index)
    result = None
    if (share / "sweep.yaml").exists():
        result = resume_sweep(share, _prefixed(progress, index), devices)
    return _meet_and_merge(out, count, index, result, progress)


def merge(out: Path, count: int) -> list[dict[str, Any]]:
    """Write out's own files from its hosts' shares; returns the merged runs.csv rows."""
    folder = ResultsFolder(out)
    stored = folder.read_yaml("sweep.yaml")
    runs = expand(stored["user_settings"], Grid(**stored["grid"]))
    rows: dict[str, dict[str, Any]] = {}
    parts: list[dict[str, Any]] = []
    shares = []
    for index in range(count):
        mine = host_share(runs, index, count)
        if not mine:
            continue
        share = ResultsFolder(out / "hosts" / str(index))
        shares.append(share)
        rows.update({r["run_id"]: r for r in share.read_runs()})
        for i, group in enumerate(group_runs(mine)):
            parts.append(checkpoints.load_done(share, i, [r.run_id for r in group])[0])
    for name in checkpoints.APPENDED:
        folder.write_bytes(name, _concatenated([s.path / name for s in shares]))
    write_arrays(folder, parts, runs[0].config)
    merged = [rows[r.run_id] for r in runs]
    folder.write_runs(merged)
    manifest = folder.read_json("manifest.json")
    manifest.update(
        finished=now(),
        **environment(),
        hosts=count,
        host_manifests={s.path.name: s.read_json("manifest.json") for s in shares},
    )
    folder.write_json("manifest.json", manifest)
    return merged


def _meet_and_merge(
    out: Path, count: int, index: int, result: SweepResult | None, progress: Progress
) -> SweepResult:
    """Wait for every share, merge on host 0, and let no host go before the merge is done."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("wgan: every share trained")
    error = None
    if index == 0:
        try:
            merged = merge(out, count)
            progress(f"host 0: merged {len(merged)} runs of {count} hosts into {out}")
        except WganError as exc:
            error = exc
    _agree(error, f"host 0 could not merge {out}")
    # Each host answers for its own runs: its time, its rate, its diverged runs.
    return result or SweepResult(out, [], 0.0, 0)


def _agree(error: WganError | None, what: str) -> None:
    """Every host learns whether host 0 succeeded, so none waits for a host that gave up."""
    from jax.experimental import multihost_utils

    ok = bool(multihost_utils.broadcast_one_to_all(np.array(error is None)))
    if error is not None:
        raise error
    if not ok:
        raise WganError(f"{what}: see host 0's error")


def _prefixed(progress: Progress, index: int) -> Progress:
    return lambda line: progress(f"host {index}: {line}")


def _concatenated(paths: list[Path]) -> bytes:
    """CSV files with one header: each share's rows, in host order."""
    chunks: list[bytes] = []
    for path in paths:
        if not path.exists():
            continue
        text = path.read_bytes()
        chunks.append(text if not chunks else text.split(b"\n", 1)[1])
    return b"".join(chunks)
