"""A fixed digit classifier that scores generated 8x8 digits: an inception-score analogue.

The classifier is multinomial logistic regression (scikit-learn's ``LogisticRegression``, L2
penalty C = 1, lbfgs, deterministic) fitted once on the digits data set's training split, the
rows of ``data.load("digits")[1]["train"]`` (values in [-1, 1]) with their labels from
``data.digits_labels()``. Nothing is downloaded: the images ship with scikit-learn. Its accuracy
on the 360 held-out real digits is about 0.97.

It is cached as ``digits_classifier.npz`` in a folder (plain arrays, read with
``allow_pickle=False``): ``load_or_train`` reuses the file when it is there and valid, and
otherwise fits and writes it (through a temporary file and a rename, so a reader never sees half
a file). Scoring then needs only numpy: p(y | x) = softmax(x W + b).

``score(classifier, images)`` reports, for n generated images:

``class_coverage`` (int, 0..10)
    how many of the 10 digits are predicted, with probability above 0.5, for at least one
    image. Above 0.5 the predicted digit outweighs the other nine together, so a blurred image
    that is half a 3 and half an 8 does not cover either. Mode collapse shows as low coverage.
``mean_confidence`` (float)
    the mean over images of the largest class probability: sharp, digit-like images score near
    1, blurs and noise lower.
``held_out_accuracy`` (float)
    the classifier's accuracy on the real held-out digits, repeated so every score carries the
    yardstick it was measured with.
``inception_score`` (float)
    exp(mean_x KL(p(y | x) || p(y))) with p(y) the mean prediction, as in Salimans et al.
    (2016) but with this classifier: 1 for one class or uninformative predictions, up to 10.

Images with a non-finite value (a diverged generator) get NaN probabilities: they make
``mean_confidence`` and ``inception_score`` NaN and cover no class.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wgan_cli import data

#: The cache file's name inside the folder given to ``load_or_train``.
CACHE_NAME = "digits_classifier.npz"
#: Bumped when the classifier or its training changes, so old caches are refitted.
FORMAT_VERSION = 1
N_CLASSES = 10
DIM = 64
#: An image covers its predicted class only with a probability above this.
CONFIDENCE_THRESHOLD = 0.5
#: L2 penalty strength (scikit-learn's C) of the logistic regression.
REGULARISATION_C = 1.0


@dataclass(frozen=True, eq=False)
class Classifier:
    """p(y | x) = softmax(x @ weights + bias), for flattened 8x8 digits in [-1, 1]."""

    weights: np.ndarray  # (64, 10) float64
    bias: np.ndarray  # (10,) float64
    held_out_accuracy: float

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) class probabilities of (n, 64) images (rows with non-finite values: NaN)."""
        x = _as_rows(images)
        with np.errstate(all="ignore"):  # rows with non-finite values are set to NaN below
            logits = x @ self.weights + self.bias
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
        p[~np.all(np.isfinite(x), axis=1)] = np.nan
        return p


def _as_rows(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError("images: need at least one image")
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != DIM:
        raise ValueError(f"images: each must hold {DIM} values (8x8 digits), got {x.shape[1]}")
    return x


def train() -> Classifier:
    """Fit the classifier on the digits training split and measure it on the held-out split."""
    from sklearn.linear_model import LogisticRegression  # deferred: sklearn import is ~1 s
    from threadpoolctl import threadpool_limits

    _, arrays = data.load("digits")
    labels = data.digits_labels()
    # One BLAS thread: on a busy machine (a sweep running beside it) threaded BLAS on these tiny
    # matrices is ~100 times slower, and the fit takes well under a second on one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegression(C=REGULARISATION_C, max_iter=1000)
        model.fit(arrays["train"].astype(np.float64), labels["train"])
    classifier = Classifier(
        weights=np.asarray(model.coef_, np.float64).T.copy(),
        bias=np.asarray(model.intercept_, np.float64).copy(),
        held_out_accuracy=0.0,
    )
    predicted = classifier.predict_proba(arrays["heldout"]).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels["heldout"]))
    return Classifier(classifier.weights, classifier.bias, accuracy)


def _read_cache(path: Path) -> Classifier | None:
    """The cached classifier, or None if the file is absent, unreadable or of another format."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if int(f["format_version"]) != FORMAT_VERSION:
                return None
            weights, bias = f["weights"], f["bias"]
            accuracy = float(f["held_out_accuracy"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):
        return None
    ok = weights.shape == (DIM, N_CLASSES) and bias.shape == (N_CLASSES,)
    if not ok or not (np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))):
        return None
    return Classifier(weights.astype(np.float64), bias.astype(np.float64), accuracy)


def _write_cache(path: Path, classifier: Classifier) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".digits_classifier-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                format_version=np.int64(FORMAT_VERSION),
                weights=classifier.weights,
                bias=classifier.bias,
                held_out_accuracy=np.float64(classifier.held_out_accuracy),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_train(folder: Path) -> Classifier:
    """The classifier cached in ``folder/digits_classifier.npz``, fitted and cached if missing.

    A cache file that is unreadable or of an older format is refitted and replaced. The folder
    is created if needed.
    """
    folder = Path(folder)
    path = folder / CACHE_NAME
    cached = _read_cache(path) if path.is_file() else None
    if cached is not None:
        return cached
    classifier = train()
    folder.mkdir(parents=True, exist_ok=True)
    _write_cache(path, classifier)
    return classifier


def score(classifier: Classifier, images: np.ndarray) -> dict[str, float | int]:
    """Score (n, 64) generated digits in [-1, 1]; the keys are described in the module doc."""
    p = classifier.predict_proba(images)
    confidence = p.max(axis=1)
    confident = np.isfinite(confidence) & (confidence > CONFIDENCE_THRESHOLD)
    covered = np.unique(p[confident].argmax(axis=1)) if confident.any() else np.array([])
    marginal = p.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0).sum(axis=1)
    return {
        "class_coverage": int(covered.size),
        "mean_confidence": float(confidence.mean()),
        "held_out_accuracy": float(classifier.held_out_accuracy),
        "inception_score": float(np.exp(kl.mean())),
    }
