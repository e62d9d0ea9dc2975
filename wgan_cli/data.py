"""Dataset registry: exact definitions of the built-in data, sampled on device with JAX keys.

Every dataset is defined exactly here, because the experiments compare runs across constraint
settings and the true Wasserstein distance (``w1_true``) is only meaningful against a fixed,
known target. All samples are float32.

Formula datasets (``finite=False``; ``load`` returns ``arrays == {}``)
----------------------------------------------------------------------
``8gaussians`` (dim 2, unbounded)
    Centres at radius 2 on the compass points and diagonals:
    (2, 0), (-2, 0), (0, 2), (0, -2), (√2, √2), (√2, -√2), (-√2, √2), (-√2, -√2).
    A sample picks a centre uniformly, adds N(0, 0.02² I) noise, and the whole point is divided
    by 1.414. Hence ``modes`` = centres / 1.414 and ``mode_std`` = 0.02 / 1.414.
``25gaussians`` (dim 2, unbounded)
    Centres (2i, 2j) for i, j in -2..2 (25 centres, i-major order), chosen uniformly; noise
    N(0, 0.05² I); the whole point divided by 2.828. ``modes`` = centres / 2.828,
    ``mode_std`` = 0.05 / 2.828.
``swissroll`` (dim 2, unbounded)
    u ~ U(0, 1), t = 1.5π(1 + 2u) (so t in [1.5π, 4.5π]); point = (t cos t, t sin t) plus
    N(0, 0.25²) noise on each coordinate (columns x and z of scikit-learn's 3-D
    ``make_swiss_roll(noise=0.25)``), then divided by 7.5.
``gaussian1d`` (dim 1, unbounded)
    N(0, 1).

Finite datasets (``finite=True``; ``load`` returns ``{"train": (N, dim), "heldout": (M, dim)}``)
-------------------------------------------------------------------------------------------------
``digits`` (dim 64, bounded)
    scikit-learn's shipped 8x8 handwritten digits (``sklearn.datasets.load_digits``, 1,797
    images, read from the package, never downloaded), flattened to 64 values and mapped from
    0..16 to [-1, 1] by x / 8 - 1. Held-out split: with
    ``perm = numpy.random.default_rng(0).permutation(1797)``, the images at ``sort(perm[:360])``
    (ceil(0.2 * 1797) = 360) are held out and those at ``sort(perm[360:])`` (1,437) are
    train. The split is fixed so held-out metrics of different runs are comparable.
    ``image_shape`` is (8, 8, 1); ``digits_labels()`` gives the class labels in the same split.

File datasets (``finite=True``, ``bounded=True``; ``load(name, path)`` reads the user's file)
---------------------------------------------------------------------------------------------
``idx`` (dim H*W)
    An IDX file, the format of MNIST and Fashion-MNIST (``train-images-idx3-ubyte``, gzipped
    or not: gzip is recognised by its magic bytes 1f 8b, never by the file name). The header
    is the magic number 0x0000TT03 (two zero bytes, element type TT, 3 dimensions), then the
    three dimensions N, H, W as big-endian uint32, then N*H*W big-endian elements. TT is 08
    (uint8, MNIST's), 09 (int8), 0B (int16), 0C (int32), 0D (float32) or 0E (float64). Label
    files (1-D) and files whose size disagrees with their header are refused.
``npz`` (dim H*W*C)
    A NumPy ``.npz`` archive (``numpy.savez(path, x=images)``) holding array ``x`` of shape
    N x H x W (one channel) or N x H x W x C (channels last), of any integer or float dtype.
    It is read with ``allow_pickle=False``: pickled files and object arrays are refused.

Both give images flattened row-major from (H, W, C) to H*W*C float32 values in [-1, 1], and
``image_shape`` = (H, W, C). Scaling: integer dtypes by their dtype's full range,
x -> (x - min) / ((max - min) / 2) - 1 with min, max of the dtype (uint8: x / 127.5 - 1, so
0 -> -1 and 255 -> 1; int8: (x + 128) / 127.5 - 1); float dtypes by the data's own range,
x -> (x - lo) / (hi - lo) * 2 - 1 with lo, hi the smallest and largest value in the file, so the
data spans exactly [-1, 1] (every value must be finite; constant data is refused). Held-out
split: the digits rule, ceil(0.2 N) images at ``sort(perm[:ceil(0.2 N)])`` with ``perm =
numpy.random.default_rng(0).permutation(N)``, the rest train. At least 10 images are needed.
Every problem with the file (missing, unreadable, wrong magic, truncated, wrong number of
dimensions, a non-finite value, pickled data, no ``x``, too few images) is a ``WganError``
naming the file.

Sampling
--------
``sample_train`` draws n fresh formula samples, or n rows of ``arrays["train"]`` uniformly with
replacement. ``sample_heldout`` draws n fresh formula samples, or min(n, M) distinct rows of
``arrays["heldout"]`` (without replacement, so the static shape is min(n, M)). Both use the given
key as is (split internally, never reused); the caller passes independent keys for train and
held-out draws.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from wgan_cli.errors import WganError


@dataclass(frozen=True)
class DataSpec:
    """Static facts about a dataset; hashable so jitted code can close over it."""

    name: str
    dim: int
    bounded: bool
    finite: bool
    modes: tuple[tuple[float, ...], ...] | None
    mode_std: float | None
    #: (H, W, C) of image data sets, whose flattened samples are row-major (H, W, C); else None.
    image_shape: tuple[int, int, int] | None = None


DATASETS: tuple[str, ...] = (
    "8gaussians",
    "25gaussians",
    "swissroll",
    "gaussian1d",
    "digits",
    "idx",
    "npz",
)
#: Data sets read from the user's file: ``load`` needs their ``path``.
FILE_DATASETS: tuple[str, ...] = ("idx", "npz")
#: Data sets of images (DataSpec.image_shape set), which convolutional networks accept.
IMAGE_DATASETS: tuple[str, ...] = ("digits", *FILE_DATASETS)
#: The fewest images a file data set may hold (ceil(0.2 * 10) = 2 of them are held out).
MIN_IMAGES = 10

HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0

_SQRT2 = math.sqrt(2.0)
_CENTRES_8 = np.array(
    [
        (2.0, 0.0),
        (-2.0, 0.0),
        (0.0, 2.0),
        (0.0, -2.0),
        (_SQRT2, _SQRT2),
        (_SQRT2, -_SQRT2),
        (-_SQRT2, _SQRT2),
        (-_SQRT2, -_SQRT2),
    ]
)
_STD_8, _SCALE_8 = 0.02, 1.414
_CENTRES_25 = np.array([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)])
_STD_25, _SCALE_25 = 0.05, 2.828
_SWISS_NOISE, _SWISS_SCALE = 0.25, 7.5


# One compiled program per (sampler, n) instead of one per primitive when called eagerly; inside
# the training loop's jit these calls are simply inlined.
_jit_n = functools.partial(jax.jit, static_argnums=1)


def _modes(centres: np.ndarray, scale: float) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in centres / scale)


def _mixture_sampler(
    centres: np.ndarray, std: float, scale: float
) -> Callable[[jax.Array, int], jax.Array]:
    @_jit_n
    def sample(key: jax.Array, n: int) -> jax.Array:
        k_mode, k_noise = jax.random.split(key)
        idx = jax.random.randint(k_mode, (n,), 0, centres.shape[0])
        c = jnp.asarray(centres, jnp.float32)[idx]
        noise = std * jax.random.normal(k_noise, (n, centres.shape[1]), jnp.float32)
        return (c + noise) / scale

    return sample


@_jit_n
def _swissroll(key: jax.Array, n: int) -> jax.Array:
    k_u, k_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_u, (n,), jnp.float32))
    roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    noise = _SWISS_NOISE * jax.random.normal(k_noise, (n, 2), jnp.float32)
    return (roll + noise) / _SWISS_SCALE


@_jit_n
def _gaussian1d(key: jax.Array, n: int) -> jax.Array:
    return jax.random.normal(key, (n, 1), jnp.float32)


_FORMULAS: dict[str, tuple[DataSpec, Callable[[jax.Array, int], jax.Array]]] = {
    "8gaussians": (
        DataSpec("8gaussians", 2, False, False, _modes(_CENTRES_8, _SCALE_8), _STD_8 / _SCALE_8),
        _mixture_sampler(_CENTRES_8, _STD_8, _SCALE_8),
    ),
    "25gaussians": (
        DataSpec(
            "25gaussians", 2, False, False, _modes(_CENTRES_25, _SCALE_25), _STD_25 / _SCALE_25
        ),
        _mixture_sampler(_CENTRES_25, _STD_25, _SCALE_25),
    ),
    "swissroll": (DataSpec("swissroll", 2, False, False, None, None), _swissroll),
    "gaussian1d": (DataSpec("gaussian1d", 1, False, False, None, None), _gaussian1d),
}


def split_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) row indices of a finite data set of n rows, each sorted ascending.

    The fixed rule every finite data set uses: ``perm = default_rng(0).permutation(n)``, the
    first ceil(0.2 n) of perm held out, the rest train.
    """
    n_heldout = math.ceil(HELDOUT_FRACTION * n)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[n_heldout:]), np.sort(perm[:n_heldout])


def _load_digits() -> tuple[DataSpec, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits  # deferred: sklearn import costs ~1 s

    x = (load_digits().data / 8.0 - 1.0).astype(np.float32)
    train_idx, heldout_idx = split_indices(x.shape[0])
    spec = DataSpec("digits", x.shape[1], True, True, None, None, image_shape=(8, 8, 1))
    return spec, {"train": x[train_idx], "heldout": x[heldout_idx]}


def digits_labels() -> dict[str, np.ndarray]:
    """The digit (0..9, int64) of every row of ``load("digits")``'s "train" and "heldout"."""
    from sklearn.datasets import load_digits

    y = load_digits().target.astype(np.int64)
    train_idx, heldout_idx = split_indices(y.shape[0])
    return {"train": y[train_idx], "heldout": y[heldout_idx]}


# User files --------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
#: IDX element type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NPZ_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (an empty one ends the list)
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later


def _why(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise WganError(f"data file not found: {path}")
    if not path.is_file():
        raise WganError(f"data file {path} is not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WganError(f"cannot read data file {path}: {_why(exc)}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """The (N, H, W) array of an IDX image file, gzipped or not, in the file's own dtype.

    A read-only view on the file's bytes (``numpy.frombuffer``), so MNIST-sized files cost one
    copy. Raises WganError naming the file for anything but a complete 3-D IDX file.
    """
    path = Path(path)
    raw = _read_file(path)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt stream
            raise WganError(f"{path}: broken gzip data ({_why(exc)})") from None
    if len(raw) < 4:
        raise WganError(f"{path}: truncated IDX file: {len(raw)} bytes, shorter than the header")
    magic = raw[:4].hex()
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise WganError(
            f"{path}: not an IDX image file: magic number 0x{magic}, expected 0x0000TT03 "
            "(0x00000803 for uint8 images such as MNIST's)"
        )
    ndim = raw[3]
    if ndim != 3:
        raise WganError(
            f"{path}: IDX file of {ndim}-D data (magic 0x{magic}); images must be 3-D, "
            "N x H x W (magic 0x0000TT03; MNIST's 1-D label files are not images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise WganError(f"{path}: truncated IDX file: {len(raw)} bytes, the header needs {header}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        what = "truncated IDX file" if len(raw) < expected else "IDX file with trailing bytes"
        shape = " x ".join(map(str, dims))
        raise WganError(
            f"{path}: {what}: the header says {shape} {dtype.name} values ({expected} bytes "
            f"with the header), the file holds {len(raw)} bytes (uncompressed)"
        )
    return np.frombuffer(raw, dtype, count=count, offset=header).reshape(dims)


def read_npz(path: str | Path) -> np.ndarray:
    """Array ``x`` of a ``.npz`` archive, as stored; pickled data is refused (WganError)."""
    path = Path(path)
    raw = _read_file(path)
    if raw.startswith(_PICKLE_MAGIC):
        raise WganError(
            f"{path}: a pickle file; pickled data is refused (it can run code): save the images "
            "with numpy.savez(path, x=images)"
        )
    if raw.startswith(_NPY_MAGIC):
        raise WganError(
            f"{path}: a single .npy array, not an .npz archive: save the images with "
            "numpy.savez(path, x=images)"
        )
    if not raw.startswith(_NPZ_MAGICS):
        raise WganError(
            f"{path}: not an .npz archive (no zip signature): save the images with "
            "numpy.savez(path, x=images)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                found = ", ".join(repr(k) for k in archive.files) or "no arrays"
                raise WganError(f"{path}: no array 'x' in the archive (it holds {found})")
            try:
                return archive["x"]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                raise WganError(
                    f"{path}: array 'x' holds Python objects, stored pickled, which are "
                    "refused: store a numeric array"
                ) from None
    except WganError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise WganError(f"{path}: broken .npz archive ({_why(exc)})") from None


def scale_images(x: np.ndarray, source: str | Path) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) images -> (N, H, W, C) float32 in [-1, 1] (module docstring).

    Integer dtypes map their dtype's range onto [-1, 1] (uint8: x / 127.5 - 1); float dtypes
    map the data's own [min, max] onto it. ``source`` names the file in error messages.
    """
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4:
        raise WganError(
            f"{source}: images must be N x H x W or N x H x W x C, got {x.ndim}-D data of shape "
            f"{tuple(x.shape)}"
        )
    n, h, w, c = x.shape
    if x.shape[3] not in (1, 3, 4) and x.shape[1] in (1, 3, 4):
        raise WganError(
            f"{source}: shape {tuple(x.shape)} looks channels-first (N, C, H, W); images must "
            "be channels-last, N x H x W x C: transpose them"
        )
    if min(h, w, c) < 1:
        raise WganError(f"{source}: empty images, shape {tuple(x.shape)}")
    if n < MIN_IMAGES:
        raise WganError(
            f"{source}: {n} images; at least {MIN_IMAGES} are needed (20% are held out)"
        )
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        # float32 is exact for 8- and 16-bit integers; wider ones need float64 arithmetic.
        work = np.float32 if x.dtype.itemsize <= 2 else np.float64
        out = x.astype(work)  # in place from here: MNIST-sized files need no extra copies
        out -= work(info.min)
        out /= work((float(info.max) - float(info.min)) / 2.0)
        out -= work(1.0)
    elif np.issubdtype(x.dtype, np.floating):
        out = x.astype(np.float64)
        bad = out.size - int(np.count_nonzero(np.isfinite(out)))
        if bad:
            raise WganError(f"{source}: {bad} non-finite value(s) (NaN or inf); all must be finite")
        lo, hi = float(out.min()), float(out.max())
        if lo == hi:
            raise WganError(f"{source}: every value is {lo:g}; constant images cannot be scaled")
        # Halved first so hi - lo cannot overflow; halving is exact: this is (x - lo) / (hi - lo).
        out *= 0.5
        out -= lo / 2.0
        out /= hi / 2.0 - lo / 2.0
        out *= 2.0
        out -= 1.0
    else:
        raise WganError(
            f"{source}: dtype {x.dtype} is not an integer or float dtype; store numbers"
        )
    return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


def image_dataset(
    name: str, images: np.ndarray, source: str | Path
) -> tuple[DataSpec, dict[str, np.ndarray]]:
    """A finite, bounded image data set from raw images (scaled by ``scale_images``), split by
    ``split_indices`` into flattened (N, H*W*C) float32 "train" and "heldout" arrays."""
    x = scale_images(images, source)
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w * c)
    train_idx, heldout_idx = split_indices(n)
    spec = DataSpec(name, h * w * c, True, True, None, None, image_shape=(h, w, c))
    return spec, {"train": flat[train_idx], "heldout": flat[heldout_idx]}


_FILE_READERS: dict[str, Callable[[str | Path], np.ndarray]] = {"idx": read_idx, "npz": read_npz}


@functools.partial(jax.jit, static_argnums=2)
def _rows_with_replacement(rows: jax.Array, key: jax.Array, n: int) -> jax.Array:
    idx = jax.random.randint(key, (n,), 0, rows.shape[0])
    return rows[idx].astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=2)
def _rows_without_replacement(rows: jax.Array, key: jax.Array, n: int) -> jax.Array:
    m = rows.shape[0]
    idx = jax.random.permutation(key, m)[: min(n, m)]
    return rows[idx].astype(jnp.float32)


def load(name: str, path: str | None = None) -> tuple[DataSpec, dict[str, np.ndarray]]:
    """Resolve a dataset name once, on the host, before anything is compiled.

    The file data sets (``FILE_DATASETS``: idx, npz) read ``path``, which they require; the
    built-in ones ignore it.
    """
    if name in _FORMULAS:
        return _FORMULAS[name][0], {}
    if name == "digits":
        return _load_digits()
    if name in _FILE_READERS:
        if path is None:
            raise WganError(f"data set {name!r} reads the user's file: set data.path")
        return image_dataset(name, _FILE_READERS[name](path), path)
    raise WganError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def check_batch(
    spec: DataSpec, arrays: dict[str, np.ndarray], batch_size: int, path: str | None = None
) -> None:
    """Refuse a batch larger than a finite data set's training split.

    Rows are drawn with replacement, so such a batch would run, but every batch would repeat
    images and the run would not be the experiment the user meant; a wrong train.batch_size
    or a truncated file is the likely cause, and both are cheaper to hear about now. path
    names the user's file in the message.
    """
    if not spec.finite:
        return
    n_train = arrays["train"].shape[0]
    if batch_size > n_train:
        raise WganError(
            f"train.batch_size ({batch_size}) exceeds the {n_train} training images of "
            f"{path or spec.name} (the other 20% are held out): lower train.batch_size"
        )


def sample_train(spec: DataSpec, arrays: dict, key: jax.Array, n: int) -> jax.Array:
    """Draw a training batch on device; ``spec`` and ``n`` are static, ``arrays`` may be traced."""
    if spec.finite:
        return _rows_with_replacement(jnp.asarray(arrays["train"]), key, n)
    return _FORMULAS[spec.name][1](key, n)


def sample_heldout(spec: DataSpec, arrays: dict, key: jax.Array, n: int) -> jax.Array:
    """Draw evaluation samples the critic was never trained on (distinct rows for finite sets)."""
    if spec.finite:
        return _rows_without_replacement(jnp.asarray(arrays["heldout"]), key, n)
    return _FORMULAS[spec.name][1](key, n)
