"""Group checkpoints: what a killed sweep needs to go on exactly where it stopped.

After every chunk but a group's last, one file holds the group's run state (every run's
networks, optimizer states and PRNG keys), the host-side snapshots taken so far and the sizes
of the append-only CSVs at that moment. When the group finishes, a second file holds what its
runs contribute to the sweep's array files. Both are written to a temporary file and renamed
into place, so a kill leaves the previous checkpoint or the new one, whole.

A resume cuts the CSVs back to the sizes of the newest checkpoint (dropping every row written
after it, whole or torn), loads the state into the same compiled program and goes on: the same
state through the same program gives the same rows as a sweep that was never stopped.

A plain .npz is enough here: one run's state is a few MB, gathered to the host in one transfer,
and it must be committed in the same rename as the host's snapshots and CSV sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from wgan_cli.errors import WganError
from wgan_cli.results import ResultsFolder

FOLDER = "checkpoints"
#: The append-only files a checkpoint records the size of (spectra.csv grows per group).
APPENDED = ("metrics.csv", "layers.csv", "spectra.csv")


@dataclass(frozen=True)
class GroupState:
    """A group part-way through: chunks done, seconds spent, state leaves, host snapshots."""

    chunks: int
    wall: float
    leaves: list[np.ndarray]
    snapshots: list[np.ndarray]
    images: list[np.ndarray]
    sizes: dict[str, int]


def _path(folder: ResultsFolder, group: int, kind: str) -> Path:
    return folder.path / FOLDER / f"group-{group}.{kind}.npz"


def appended_sizes(folder: ResultsFolder) -> dict[str, int]:
    """Bytes in each append-only CSV now (0 for one not written yet)."""
    return {
        n: (folder.path / n).stat().st_size if (folder.path / n).exists() else 0 for n in APPENDED
    }


def cut_back(folder: ResultsFolder, sizes: dict[str, int]) -> None:
    """Truncate each append-only CSV to its checkpointed size; one that was empty then goes."""
    for name in APPENDED:
        target = folder.path / name
        if not target.exists():
            continue
        if sizes.get(name, 0) == 0:
            target.unlink()
        elif target.stat().st_size > sizes[name]:
            with open(target, "r+b") as fh:
                fh.truncate(sizes[name])


def save_state(
    folder: ResultsFolder,
    group: int,
    run_ids: list[str],
    chunks: int,
    wall: float,
    state: Any,
    snapshots: list[np.ndarray],
    images: list[np.ndarray],
) -> None:
    """Checkpoint a group after `chunks` chunks, once that chunk's rows are on disk."""
    leaves = [_to_host(leaf) for leaf in jax.tree_util.tree_leaves(state)]
    _path(folder, group, "state").parent.mkdir(exist_ok=True)
    folder.write_npz(
        f"{FOLDER}/group-{group}.state.npz",
        compress=False,
        run_ids=np.array(run_ids),
        chunks=np.array(chunks),
        wall=np.array(wall),
        **_sizes_arrays(appended_sizes(folder)),
        **{f"leaf_{i}": a for i, a in enumerate(leaves)},
        **{f"snapshot_{i}": a for i, a in enumerate(snapshots)},
        **{f"image_{i}": a for i, a in enumerate(images)},
    )


def load_state(folder: ResultsFolder, group: int, run_ids: list[str]) -> GroupState | None:
    """The group's newest checkpoint, or None when it never wrote one."""
    path = _path(folder, group, "state")
    if not path.exists():
        return None
    with _open(path, run_ids) as z:
        return GroupState(
            chunks=int(z["chunks"]),
            wall=float(z["wall"]),
            leaves=_numbered(z, "leaf"),
            snapshots=_numbered(z, "snapshot"),
            images=_numbered(z, "image"),
            sizes=_sizes(z),
        )


def restore(template: Any, leaves: list[np.ndarray]) -> Any:
    """`template`'s pytree (a freshly initialised state, placed on the run mesh) holding the
    checkpointed leaves, each put where the template's leaf lives."""
    flat, treedef = jax.tree_util.tree_flatten(template)
    if len(flat) != len(leaves):
        raise WganError("checkpoint does not match this sweep's networks; it cannot be resumed")
    placed = [_from_host(t, a) for t, a in zip(flat, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, placed)


def save_done(
    folder: ResultsFolder, group: int, artifacts: dict[str, Any], sizes: dict[str, int]
) -> None:
    """What a finished group adds to the sweep's array files, kept for a later resume."""
    _path(folder, group, "done").parent.mkdir(exist_ok=True)
    plain = {k: v for k, v in artifacts.items() if k not in ("layer_names", "image_shape")}
    folder.write_npz(
        f"{FOLDER}/group-{group}.done.npz",
        layer_names=np.array(artifacts["layer_names"]),
        image_shape=np.array(artifacts["image_shape"] or [], np.int64),
        **_sizes_arrays(sizes),
        **plain,
    )


def load_done(
    folder: ResultsFolder, group: int, run_ids: list[str]
) -> tuple[dict[str, Any], dict[str, int]]:
    """A finished group's artifacts (as the sweep builds them) and the CSV sizes after it."""
    path = _path(folder, group, "done")
    if not path.exists():
        raise WganError(f"{path} is missing: the finished runs' arrays cannot be rebuilt")
    with _open(path, run_ids) as z:
        shape = tuple(int(s) for s in z["image_shape"])
        artifacts = {k: z[k] for k in z.files if not k.startswith(("size_", "image_shape"))}
        artifacts["layer_names"] = [str(n) for n in artifacts["layer_names"]]
        artifacts["image_shape"] = shape or None
        return artifacts, _sizes(z)


def drop_state(folder: ResultsFolder, group: int) -> None:
    """A finished group's state checkpoint is no longer needed."""
    _path(folder, group, "state").unlink(missing_ok=True)


def _open(path: Path, run_ids: list[str]):
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise WganError(f"checkpoint {path} is unreadable: {exc}") from None
    if [str(r) for r in z["run_ids"]] != list(run_ids):
        z.close()
        raise WganError(f"checkpoint {path} belongs to other runs; it cannot be resumed")
    return z


def _to_host(leaf: jax.Array) -> np.ndarray:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(jax.device_get(leaf))


def _from_host(template: jax.Array, saved: np.ndarray) -> jax.Array:
    if jax.dtypes.issubdtype(template.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(saved, impl=jax.random.key_impl(template))
        return jax.device_put(key, template.sharding)
    if saved.shape != template.shape or saved.dtype != template.dtype:
        raise WganError("checkpoint does not match this sweep's networks; it cannot be resumed")
    return jax.device_put(saved, template.sharding)


def _numbered(z: Any, prefix: str) -> list[np.ndarray]:
    count = sum(1 for k in z.files if k.startswith(f"{prefix}_"))
    return [z[f"{prefix}_{i}"] for i in range(count)]


def _sizes_arrays(sizes: dict[str, int]) -> dict[str, np.ndarray]:
    return {f"size_{name}": np.array(sizes.get(name, 0)) for name in APPENDED}


def _sizes(z: Any) -> dict[str, int]:
    return {name: int(z[f"size_{name}"]) for name in APPENDED}
