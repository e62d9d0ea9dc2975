"""A tiny sweep through the command line, then its report: the files a user gets."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wgan_cli.cli import app
from wgan_cli.config import load_raw
from wgan_cli.sweep import Grid, expand

TINY = [
    "critic.hidden=8",
    "generator.hidden=8",
    "train.batch_size=16",
    "train.eval_samples=50",
    "train.steps=6",
    "train.log_every=2",
]
SETS = [arg for item in TINY for arg in ("--set", item)]
METRICS = [
    "run_id", "c", "seed", "step", "critic_updates", "critic_loss", "gen_loss", "w_estimate",
    "w1_true", "clip_frac", "weight_abs_max", "grad_norm_real", "grad_norm_fake", "wall_s",
]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    args = ["sweep", "--c", "0.001, 0.1", "--seeds", "0,1", *SETS, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "step 6/6" in result.stderr  # progress is shown
    return out


def test_runs_csv_has_one_finished_row_per_c_and_seed(swept: Path):
    runs = pd.read_csv(swept / "runs.csv")
    assert len(runs) == 4
    assert sorted(zip(runs.c, runs.seed, strict=True)) == [
        (0.001, 0),
        (0.001, 1),
        (0.1, 0),
        (0.1, 1),
    ]
    assert (runs.status == "done").all() and (runs.steps_done == 6).all()
    assert runs.run_id.is_unique


def test_run_ids_are_the_hash_of_the_resolved_settings(swept: Path):
    runs = pd.read_csv(swept / "runs.csv", dtype={"run_id": str})
    again = expand(load_raw(None, TINY), Grid(cs=[0.001, 0.1], seeds=[0, 1]))
    assert set(runs.run_id) == {r.run_id for r in again}


def test_metrics_csv_is_tidy_complete_and_finite(swept: Path):
    metrics = pd.read_csv(swept / "metrics.csv")
    assert set(METRICS) <= set(metrics.columns)
    assert len(metrics) == 4 * 3  # 4 runs x (6 steps / log_every 2)
    assert sorted(metrics.step.unique()) == [2, 4, 6]
    assert (metrics.critic_updates == metrics.step * 5).all()  # n_critic 5
    numeric = metrics[[m for m in METRICS if m != "run_id"]]
    assert np.isfinite(numeric.to_numpy(dtype=float)).all()
    for c, rows in metrics.groupby("c"):
        assert (rows.weight_abs_max <= np.float32(c)).all()
    assert (metrics.w1_true > 0).all()


def test_manifest_and_histograms_describe_the_sweep(swept: Path):
    import json

    manifest = json.loads((swept / "manifest.json").read_text())
    for key in ("python", "jax", "flax", "optax", "devices", "git_commit", "command", "started"):
        assert key in manifest
    assert manifest["finished"] >= manifest["started"]
    hist = np.load(swept / "histograms.npz")
    assert hist["counts"].shape[:2] == (4, 4)  # 4 runs x (3 hidden + 1 output) layers
    sizes = [2 * 8 + 8, 8 * 8 + 8, 8 * 8 + 8, 8 + 1]  # each layer's kernel + bias
    np.testing.assert_array_equal(hist["counts"].sum(axis=2), np.tile(sizes, (4, 1)))


def test_report_summarises_each_c(swept: Path):
    result = CliRunner().invoke(app, ["report", str(swept)])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = pd.read_csv(swept / "summary.csv")
    assert list(summary.arm) == ["clip c=0.001", "clip c=0.1"]
    assert list(summary.n) == [2, 2]
    runs = pd.read_csv(swept / "runs.csv")
    for c, rows in runs.groupby("c"):
        mean = summary.loc[summary.c == c, "clip_frac_mean"].item()
        assert math.isclose(mean, sum(rows.clip_frac) / 2, rel_tol=1e-9)
    for name in ("report.md", "plots/w_vs_step.png", "plots/weight_hist.png"):
        assert (swept / name).is_file()
    assert "clip c=0.001" in result.stdout


def test_a_users_npz_images_train_end_to_end(tmp_path: Path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "faces.npz", x=rng.integers(0, 256, (60, 4, 4), dtype=np.uint8))
    out = tmp_path / "npz-run"
    sets = [*TINY, "data.dataset=npz", f"data.path={tmp_path / 'faces.npz'}"]
    args = ["train", "--config", "configs/swissroll.yaml", "--out", str(out), "--devices", "1"]
    result = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 3 and np.isfinite(metrics.w1_true).all()
    with np.load(out / "samples.npz") as samples:
        assert samples["samples"].shape[1:] == (12, 16)  # as many as the 20% held out
        assert list(samples["image_shape"]) == [4, 4, 1]
        assert np.abs(samples["samples"]).max() <= 1.0  # bounded data: tanh generator
