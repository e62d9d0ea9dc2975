"""The digits classifier score: accurate on real digits, cached as a plain file, reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wgan_cli import data, digits_score
from wgan_cli.digits_score import CACHE_NAME, Classifier, load_or_train, score


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scores") / "run"  # not there yet: load_or_train makes it
    load_or_train(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(cache: Path) -> Classifier:
    return load_or_train(cache)


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    return data.load("digits")[1]


def test_held_out_accuracy(classifier: Classifier, digits: dict[str, np.ndarray]) -> None:
    labels = data.digits_labels()["heldout"]
    predicted = classifier.predict_proba(digits["heldout"]).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    assert accuracy > 0.9
    assert classifier.held_out_accuracy == pytest.approx(accuracy)


def test_real_digits_cover_every_class(classifier: Classifier, digits: dict) -> None:
    result = score(classifier, digits["heldout"])
    assert set(result) == {
        "class_coverage",
        "mean_confidence",
        "held_out_accuracy",
        "inception_score",
    }
    assert result["class_coverage"] == 10 and isinstance(result["class_coverage"], int)
    assert 0.8 < result["mean_confidence"] <= 1.0
    assert result["held_out_accuracy"] == classifier.held_out_accuracy
    assert 7.0 < result["inception_score"] <= 10.0


def test_constant_images_cover_at_most_one_class(classifier: Classifier) -> None:
    for value in (-1.0, 0.0, 1.0):
        result = score(classifier, np.full((100, 64), value, np.float32))
        assert result["class_coverage"] <= 1
        # Every image gets the same prediction: p(y|x) = p(y), so the inception score is 1.
        assert result["inception_score"] == pytest.approx(1.0)


def test_one_digit_repeated_is_mode_collapse(classifier: Classifier, digits: dict) -> None:
    labels = data.digits_labels()["heldout"]
    sevens = digits["heldout"][labels == 7]
    result = score(classifier, sevens)
    assert result["class_coverage"] <= 2 and result["inception_score"] < 2.0


def test_probabilities(classifier: Classifier, digits: dict) -> None:
    p = classifier.predict_proba(digits["heldout"][:5].reshape(5, 8, 8))  # any (n, ...) of 64
    assert p.shape == (5, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="64"):
        classifier.predict_proba(np.zeros((3, 28 * 28)))
    with pytest.raises(ValueError, match="at least one"):
        score(classifier, np.zeros((0, 64)))


def test_non_finite_images_make_nan(classifier: Classifier, digits: dict) -> None:
    x = digits["heldout"][:50].copy()
    x[0, 3], x[1, 5] = np.nan, np.inf
    p = classifier.predict_proba(x)
    assert np.all(np.isnan(p[:2])) and np.all(np.isfinite(p[2:]))
    result = score(classifier, x)
    assert np.isnan(result["mean_confidence"]) and np.isnan(result["inception_score"])
    assert result["class_coverage"] == score(classifier, x[2:])["class_coverage"]


def test_cache_is_a_plain_file_and_reused(
    cache: Path, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cache / CACHE_NAME
    with np.load(path, allow_pickle=False) as f:  # no pickled objects inside
        assert set(f.files) == {"format_version", "weights", "bias", "held_out_accuracy"}
        np.testing.assert_array_equal(f["weights"], classifier.weights)
    assert [p.name for p in cache.iterdir()] == [CACHE_NAME]  # no temporary file left behind
    before = path.stat().st_mtime_ns

    def no_training() -> Classifier:
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(digits_score, "train", no_training)
    again = load_or_train(cache)
    assert path.stat().st_mtime_ns == before
    np.testing.assert_array_equal(again.weights, classifier.weights)
    np.testing.assert_array_equal(again.bias, classifier.bias)
    assert again.held_out_accuracy == classifier.held_out_accuracy


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not an npz"),
        lambda p: p.write_bytes(p.read_bytes()[:100]),
        lambda p: np.savez(p, format_version=np.int64(0), weights=np.zeros((64, 10))),
        lambda p: np.savez(p, format_version=np.int64(1), weights=np.zeros((3, 3))),
    ],
)
def test_broken_cache_is_refitted(
    cache: Path,
    classifier: Classifier,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: object,
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    path = folder / CACHE_NAME
    path.write_bytes((cache / CACHE_NAME).read_bytes())
    damage(path)
    calls = []
    monkeypatch.setattr(digits_score, "train", lambda: calls.append(1) or classifier)
    refitted = load_or_train(folder)
    assert calls == [1]
    np.testing.assert_array_equal(refitted.weights, classifier.weights)
    assert load_or_train(folder).held_out_accuracy == classifier.held_out_accuracy
    assert calls == [1]  # the rewritten file is read back


def test_training_is_deterministic(classifier: Classifier) -> None:
    again = digits_score.train()
    np.testing.assert_array_equal(again.weights, classifier.weights)
    np.testing.assert_array_equal(again.bias, classifier.bias)


def test_cache_write_is_atomic(
    tmp_path: Path, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written to a temporary name and renamed: a failed write leaves no file behind.
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(digits_score.np, "savez", disk_full)
    with pytest.raises(OSError, match="disk full"):
        digits_score._write_cache(tmp_path / CACHE_NAME, classifier)
    assert list(tmp_path.iterdir()) == []
