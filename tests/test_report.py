"""Tests for report.py against a results folder written by hand.

Expected numbers come from the values the test wrote, via the `statistics` module, so the
checks do not reuse the pandas code they are checking.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from typer.testing import CliRunner

from wgan_cli.cli import app
from wgan_cli.errors import WganError
from wgan_cli.report import (
    OPTIONAL_METRICS,
    SUMMARY_METRICS,
    Histograms,
    Report,
    _plot_arm_histogram,
    _plot_histograms,
    _plot_w,
    _sample_picks,
    act_grad_slopes,
    arm_colours,
    arm_histograms,
    arm_label,
    assign_arms,
    build_report,
    first_seed_runs,
    folder_labels,
    format_mean_std,
    ls_slope,
    median_window,
    parse_formats,
    read_folder,
    read_histograms,
    read_layers,
    read_runs,
    read_samples,
    rolling_median,
    scale_y,
    summarise,
    symlog_ticks,
)
from wgan_cli.results import DIGITS_SCORE_COLUMNS

NAN = math.nan
STEPS = (0, 50, 100)
EDGES_REL = np.linspace(-1.1, 1.1, 23)
LAYERS = ("dense_0", "dense_1", "dense_2")
ARMS_IN_ORDER = ["clip c=0.001", "clip c=0.01", "clip c=0.1", "gp λ=10", "sn", "none"]
N_HIDDEN = 3  # layers.csv: hidden layers 0..2 have act_grad_norm, the output layer 3 none
# log10(act_grad_norm) = a * layer + b at the last step, a per arm (c=0.001 also per seed)
SLOPE_OF_ARM = {"clip c=0.01": 1.0, "clip c=0.1": 0.3, "gp λ=10": 0.0, "sn": 0.2, "none": -0.25}
GRID = np.linspace(-2.0, 2.0, 9)
RUN_METRICS = ("grad_norm_interp", "modes_covered", "high_quality_frac")
NEW_PLOTS = ("layer_grad_norms", "surfaces", "samples")


@dataclass
class Written:
    """What the fixture wrote, kept as plain Python for computing expectations."""

    runs: list[dict] = field(default_factory=list)
    arm_of: dict[str, str] = field(default_factory=dict)
    hist_counts: dict[str, np.ndarray] = field(default_factory=dict)
    hist_scale: dict[str, float] = field(default_factory=dict)
    slope: dict[str, float] = field(default_factory=dict)  # the a each run's rows were made with

    def done_values(self, arm: str, metric: str) -> list[float]:
        return [
            r[metric]
            for r in self.runs
            if self.arm_of[r["run_id"]] == arm
            and r["status"] == "done"
            and not math.isnan(r[metric])
        ]


def _run_specs() -> list[tuple[str, str, float, float, int, str]]:
    """(run_id, constraint, c, gp_lambda, seed, status); clip arms deliberately out of order."""
    specs = []
    for c in (0.1, 0.001, 0.01):
        for seed in (0, 1):
            status = "diverged" if (c == 0.1 and seed == 1) else "done"
            specs.append((f"clip-{c:g}-s{seed}", "clip", c, NAN, seed, status))
    specs.append(("clip-0.01-s2", "clip", 0.01, NAN, 2, "running"))
    specs += [(f"gp-s{s}", "gp", NAN, 10.0, s, "done") for s in (0, 1, 2)]
    specs += [("sn-s0", "sn", NAN, NAN, 0, "done"), ("none-s0", "none", NAN, NAN, 0, "done")]
    return specs


def _slope(run_id: str, arm: str, seed: int) -> float:
    if arm == "clip c=0.001":
        return 1.5 + 0.1 * seed  # seeds 0 and 1: mean 1.55, std 0.1 / sqrt(2)
    if run_id == "clip-0.1-s1":
        return 99.0  # diverged: must not reach the mean
    return SLOPE_OF_ARM[arm]


def write_results(
    folder: Path,
    *,
    histograms: bool = True,
    layers: bool = True,
    spectra: bool = True,
    samples: bool = True,
) -> Written:
    """Write runs.csv, metrics.csv (with unknown extra columns), histograms.npz and, unless
    turned off, layers.csv, spectra.csv and samples.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    written = Written()
    metric_rows = []
    for run_id, constraint, c, lam, seed, status in _run_specs():
        bad = status != "done"  # values that would wreck a mean if averaged in
        finals = {m: (1e6 if bad else rng.uniform(0.01, 2.0)) for m in SUMMARY_METRICS}
        if constraint != "clip":
            finals["clip_frac"] = NAN
        written.runs.append(
            {
                "run_id": run_id,
                "constraint": constraint,
                "c": c,
                "gp_lambda": lam,
                "seed": seed,
                "status": status,
                "diverged_step": 50 if status == "diverged" else None,
                "steps_done": 100,
                "wall_s": 1.5,
                **finals,
                "grad_norm_interp": rng.uniform(0.5, 1.5),
                "modes_covered": rng.randint(0, 8),
                "high_quality_frac": rng.uniform(0, 1),
                "future_field": "whatever",
            }
        )
        written.arm_of[run_id] = arm_label(constraint, c, lam)
        written.slope[run_id] = _slope(run_id, written.arm_of[run_id], seed)
        for step in STEPS:
            diverged_now = status == "diverged" and step > 50
            metric_rows.append(
                {
                    "run_id": run_id,
                    "constraint": constraint,
                    "c": c,
                    "gp_lambda": lam,
                    "seed": seed,
                    "step": step,
                    "critic_updates": 5 * step,
                    "critic_loss": -rng.uniform(0, 1),
                    "gen_loss": rng.uniform(0, 1),
                    "w_estimate": NAN if diverged_now else (c if c == c else 1.0) * (1 + step),
                    "w1_true": NAN if diverged_now else 1.0 / (1 + step + seed),
                    "lipschitz_ratio": rng.uniform(0, 1),
                    "clip_frac": rng.uniform(0, 1) if constraint == "clip" else NAN,
                    "weight_abs_mean": rng.uniform(0, 1),
                    "weight_abs_max": rng.uniform(0, 1),
                    "grad_norm_real": rng.uniform(0, 1),
                    "grad_norm_fake": rng.uniform(0, 1),
                    "wall_s": 0.1 * step,
                    "layer_grad_norm/3": rng.uniform(0, 1),
                    "mystery": "x",
                }
            )
    pd.DataFrame(written.runs).to_csv(folder / "runs.csv", index=False)
    pd.DataFrame(metric_rows).to_csv(folder / "metrics.csv", index=False)
    (folder / "manifest.json").write_text('{"name": "toy-sweep"}', encoding="utf-8")
    if histograms:
        _write_histograms(folder / "histograms.npz", written)
    if layers:
        _write_layers(folder / "layers.csv", written)
    if spectra:
        _write_spectra(folder / "spectra.csv", written)
    if samples:
        _write_samples(folder / "samples.npz", written)
    return written


def _last_step(run: dict) -> int:
    return 50 if run["status"] == "running" else STEPS[-1]  # the unfinished run lags


def _write_layers(path: Path, written: Written) -> None:
    """Rows at every step; only the last step follows the slope, earlier ones are flat, and a
    wrong copy of gp-s0's last step comes first (a resumed sweep): the later copy must win."""
    rows = []

    def block(run: dict, step: int, a: float) -> None:
        b = -3.0 + 0.5 * run["seed"]
        for layer in range(N_HIDDEN + 1):
            rows.append(
                {
                    "run_id": run["run_id"],
                    "constraint": run["constraint"],
                    "c": run["c"],
                    "gp_lambda": run["gp_lambda"],
                    "seed": run["seed"],
                    "step": step,
                    "layer": layer,
                    "name": f"Dense_{layer}",
                    "act_grad_norm": 10 ** (a * layer + b) if layer < N_HIDDEN else None,
                    "weight_grad_norm": 10 ** (b - 0.5 * layer),
                    "clip_frac": 0.5 if run["constraint"] == "clip" else None,
                }
            )

    gp0 = next(r for r in written.runs if r["run_id"] == "gp-s0")
    block(gp0, STEPS[-1], 7.0)
    for run in written.runs:
        for step in (s for s in STEPS if s <= _last_step(run)):
            slope = written.slope[run["run_id"]] if step == _last_step(run) else 0.0
            block(run, step, slope)
    pd.DataFrame(rows).to_csv(path, index=False)


def _write_spectra(path: Path, written: Written) -> None:
    rows = []
    for i, run in enumerate(written.runs):
        ranks = [1.0 + i + 0.5 * layer for layer in range(N_HIDDEN)] + [1.0]
        run["effective_rank"] = statistics.mean(ranks)  # what the report should average
        for layer, rank in enumerate(ranks):
            rows.append(
                {
                    "run_id": run["run_id"],
                    "constraint": run["constraint"],
                    "c": run["c"],
                    "gp_lambda": run["gp_lambda"],
                    "seed": run["seed"],
                    "layer": layer,
                    "name": f"Dense_{layer}",
                    "top_singular_value": 2.0,
                    "effective_rank": rank,
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)


def _write_samples(path: Path, written: Written, dim: int = 2, surface: bool = True) -> None:
    """Runs in reverse order (as a sweep's groups may store them), the unfinished one absent."""
    rng = np.random.default_rng(1)
    ids = [r["run_id"] for r in reversed(written.runs) if r["status"] != "running"]
    n = len(ids)
    arrays = {
        "run_ids": np.array(ids),
        "samples": rng.normal(size=(n, 200, dim)),
        "real": rng.normal(size=(n, 300, dim)) * 0.2 + 1.0,
    }
    if surface:
        x, y = np.meshgrid(GRID, GRID)
        arrays["axis"] = GRID
        arrays["values"] = np.stack([k * x + np.sin(2 * y) for k in range(n)])
    np.savez(path, **arrays)


def _write_histograms(path: Path, written: Written) -> None:
    rng = np.random.default_rng(0)
    run_ids = [r["run_id"] for r in written.runs]
    for r in written.runs:
        c = r["c"]
        # gp runs get different scales on purpose: their bins differ, so they must not be summed.
        scale = c if r["constraint"] == "clip" else 0.5 + 0.1 * r["seed"]
        written.hist_scale[r["run_id"]] = scale
        written.hist_counts[r["run_id"]] = rng.integers(0, 50, (len(LAYERS), EDGES_REL.size - 1))
    np.savez(
        path,
        run_ids=np.array(run_ids),
        layer_names=np.array(LAYERS),
        edges_rel=EDGES_REL,
        scale=np.array([written.hist_scale[i] for i in run_ids]),
        counts=np.stack([written.hist_counts[i] for i in run_ids]),
    )


_TOY: dict[str, tuple[Path, Written, object]] = {}


def build_toy_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Written, object]:
    """The full toy folder and its report in every format, built once per session: rendering
    its six plots is most of this file's time, and test_report_html.py reads the same page."""
    if "toy" not in _TOY:
        folder = tmp_path_factory.mktemp("results") / "toy"
        written = write_results(folder)
        _TOY["toy"] = (folder, written, build_report(folder))
    return _TOY["toy"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Written, object]:
    return build_toy_report(tmp_path_factory)


def _row(summary: pd.DataFrame, arm: str) -> pd.Series:
    rows = summary[summary["arm"] == arm]
    assert len(rows) == 1, arm
    return rows.iloc[0]


def test_summary_means_and_stds_match_hand_computation(built) -> None:
    _, written, report = built
    for arm in ARMS_IN_ORDER:
        row = _row(report.summary, arm)
        for metric in SUMMARY_METRICS:
            values = written.done_values(arm, metric)
            mean = statistics.mean(values) if values else NAN
            std = statistics.stdev(values) if len(values) >= 2 else NAN
            assert row[f"{metric}_mean"] == pytest.approx(mean, nan_ok=True), (arm, metric)
            assert row[f"{metric}_std"] == pytest.approx(std, nan_ok=True), (arm, metric)


def test_optional_metrics_match_hand_computation(built) -> None:
    _, written, report = built
    for arm in ARMS_IN_ORDER:
        row = _row(report.summary, arm)
        for metric in ("effective_rank", *RUN_METRICS):
            values = written.done_values(arm, metric)
            std = statistics.stdev(values) if len(values) >= 2 else NAN
            assert row[f"{metric}_mean"] == pytest.approx(statistics.mean(values)), (arm, metric)
            assert row[f"{metric}_std"] == pytest.approx(std, nan_ok=True), (arm, metric)


def test_act_grad_slope_recovers_the_slope_the_rows_were_made_with(built) -> None:
    _, _, report = built
    expected = {
        # arm: (mean, std) over done seeds, by hand from the slopes written
        "clip c=0.001": (1.55, 0.1 / math.sqrt(2)),
        "clip c=0.01": (1.0, 0.0),  # s0, s1 done; the unfinished s2 is not averaged
        "clip c=0.1": (0.3, NAN),  # s1 diverged with slope 99
        "gp λ=10": (0.0, 0.0),  # the resumed duplicate with slope 7 lost to the later rows
        "sn": (0.2, NAN),
        "none": (-0.25, NAN),
    }
    for arm, (mean, std) in expected.items():
        row = _row(report.summary, arm)
        assert row["act_grad_slope_mean"] == pytest.approx(mean, abs=1e-12), arm
        assert row["act_grad_slope_std"] == pytest.approx(std, abs=1e-12, nan_ok=True), arm


def test_per_run_slopes_use_each_runs_last_step(built) -> None:
    folder, written, _ = built
    slopes = act_grad_slopes(read_layers(folder / "layers.csv"))
    assert set(slopes.index) == set(written.slope)
    for run_id, a in written.slope.items():
        assert slopes[run_id] == pytest.approx(a, abs=1e-12), run_id
    # The unfinished run's last step is 50, where it follows its slope (1.0), not 0.
    assert slopes["clip-0.01-s2"] == pytest.approx(1.0)


def test_ls_slope() -> None:
    assert ls_slope(np.array([0, 1, 2]), np.array([1.0, 3.0, 5.0])) == pytest.approx(2.0)
    # y = 0, 2, 1 at x = 0, 1, 2: slope = sum(dx dy) / sum(dx^2) = (-1*-1 + 1*0) / 2 = 0.5
    assert ls_slope(np.array([0, 1, 2]), np.array([0.0, 2.0, 1.0])) == pytest.approx(0.5)
    assert math.isnan(ls_slope(np.array([1, 1]), np.array([0.0, 2.0])))
    assert math.isnan(ls_slope(np.array([]), np.array([])))


def test_summary_csv_holds_the_same_numbers(built) -> None:
    folder, _, report = built
    on_disk = pd.read_csv(folder / "summary.csv")
    # The fixture has no digits, so no digits score.
    optional = [m for m in OPTIONAL_METRICS if m not in DIGITS_SCORE_COLUMNS]
    stats = [f"{m}_{s}" for m in (*SUMMARY_METRICS, *optional) for s in ("mean", "std")]
    expected_columns = ["arm", "constraint", "c", "gp_lambda", "n", "n_diverged", "n_unfinished"]
    assert list(on_disk.columns) == expected_columns + stats
    pd.testing.assert_frame_equal(on_disk[stats], report.summary[stats], check_dtype=False)
    assert list(on_disk["arm"]) == ARMS_IN_ORDER


def test_diverged_and_unfinished_runs_are_counted_not_averaged(built) -> None:
    _, _, report = built
    c01 = _row(report.summary, "clip c=0.1")
    assert (c01["n"], c01["n_diverged"], c01["n_unfinished"]) == (1, 1, 0)
    assert c01["w1_true_mean"] < 1e3  # the diverged run wrote 1e6
    assert math.isnan(c01["w1_true_std"])  # a single done run has no spread
    c001 = _row(report.summary, "clip c=0.01")
    assert (c001["n"], c001["n_diverged"], c001["n_unfinished"]) == (2, 0, 1)
    assert c001["critic_loss_mean"] < 1e3


def test_arm_labels_order_and_settings(built) -> None:
    _, _, report = built
    summary = report.summary
    assert list(summary["arm"]) == ARMS_IN_ORDER
    assert list(summary["c"].iloc[:3]) == [0.001, 0.01, 0.1]
    assert summary["c"].iloc[3:].isna().all()
    assert _row(summary, "gp λ=10")["gp_lambda"] == 10.0
    assert math.isnan(_row(summary, "gp λ=10")["clip_frac_mean"])


def test_arm_label_formats() -> None:
    assert arm_label("clip", 0.01, NAN) == "clip c=0.01"
    assert arm_label("clip", 1e-4, 10.0) == "clip c=0.0001"
    assert arm_label("gp", NAN, 10.0) == "gp λ=10"
    assert arm_label("sn", NAN, NAN) == "sn"
    assert arm_label("none", 0.01, NAN) == "none"
    assert arm_label("lp", 0.5, NAN) == "lp c=0.5"


def test_files_written_and_pngs_decode(built) -> None:
    folder, _, report = built
    names = sorted(p.relative_to(folder).as_posix() for p in report.files)
    assert names == [
        "plots/clip_frac.png",
        "plots/layer_grad_norms.png",
        "plots/samples.png",
        "plots/surfaces.png",
        "plots/w_vs_step.png",
        "plots/weight_hist.png",
        "report.html",  # the default writes every format: md, html and csv
        "report.md",
        "summary.csv",
    ]
    for png in (p for p in report.files if p.suffix == ".png"):
        _assert_not_blank(png)


def _assert_not_blank(png: Path) -> None:
    image = mpimg.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200, png
    assert float(np.std(image[..., :3])) > 0.01, f"{png} looks blank"


def test_report_md_links_resolve_and_explain_metrics(built) -> None:
    folder, _, report = built
    text = (folder / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# WGAN report: toy-sweep")
    links = re.findall(r"\]\(([^)]+)\)", text)
    expected = ["clip_frac", *NEW_PLOTS, "w_vs_step", "weight_hist"]
    assert sorted(links) == sorted(f"plots/{name}.png" for name in expected)
    assert all((folder / link).is_file() for link in links)
    for metric in (*SUMMARY_METRICS, *OPTIONAL_METRICS):
        assert (f"**{metric}**" in text) == (metric not in DIGITS_SCORE_COLUMNS), metric
    assert "## Diagnostics" in text
    assert "| clip c=0.001 | 2 | 1.55 ± 0.071 |" in text  # arm, n, act_grad_slope first
    for heading in ("WGAN-GP Figure 1a", "WGAN-GP Figure 1b", "Generated vs real samples"):
        assert f"### {heading}" in text or heading in text
    assert "| clip c=0.001 |" in text
    assert "clip-0.1-s1" in text  # diverged runs are listed


def test_terminal_table(built) -> None:
    _, _, report = built
    lines = report.table.splitlines()
    assert lines[0].split()[:4] == ["arm", "n", "div", "unf"]
    body = lines[2 : 2 + len(ARMS_IN_ORDER)]
    assert [line.split("  ")[0].strip() for line in body] == ARMS_IN_ORDER
    assert "±" in report.table
    assert "gen_loss" not in report.table
    assert lines[0].split()[-1] == "act_slope"
    assert "1.55 ± 0.071" in body[0]


def test_format_mean_std() -> None:
    assert format_mean_std(0.012345, 0.0045) == "0.0123 ± 0.0045"
    assert format_mean_std(0.5, NAN) == "0.5"
    assert format_mean_std(NAN, NAN) == "-"


def test_arm_histograms_sum_layers_and_runs_in_weight_units(built) -> None:
    folder, written, _ = built
    hist = read_histograms(folder / "histograms.npz")
    assert hist is not None
    ids = ["clip-0.01-s0", "clip-0.01-s1"]
    summed = arm_histograms(hist, ids)
    assert summed is not None
    edges, counts = summed
    np.testing.assert_allclose(edges, EDGES_REL * 0.01)
    expected = sum(written.hist_counts[i].sum(axis=0) for i in ids)
    np.testing.assert_array_equal(counts, expected)
    assert arm_histograms(hist, ["not-a-run"]) is None


def test_arm_histograms_rebin_runs_with_different_scales(built) -> None:
    folder, written, _ = built
    hist = read_histograms(folder / "histograms.npz")
    ids = ["gp-s0", "gp-s1"]  # scales 0.5 and 0.6
    edges, counts = arm_histograms(hist, ids)
    np.testing.assert_allclose(edges, EDGES_REL * 0.6)
    total = sum(int(written.hist_counts[i].sum()) for i in ids)
    assert counts.sum() == pytest.approx(total)  # nothing lost when spreading onto wider bins


def test_rebinning_splits_a_bin_by_overlap() -> None:
    # edges_rel [0, 1, 3]: run a (scale 1) has bins [0,1], [1,3]; run b (scale 2) has [0,2],
    # [2,6]. a's [1,3] bin straddles b's edge at 2, so its 4 counts split 2 / 2.
    hist = Histograms(
        run_ids=np.array(["a", "b"]),
        edges_rel=np.array([0.0, 1.0, 3.0]),
        scale=np.array([1.0, 2.0]),
        counts=np.array([[[2, 4]], [[10, 20]]]),
    )
    edges, counts = arm_histograms(hist, ["a", "b"])
    np.testing.assert_allclose(edges, [0.0, 2.0, 6.0])
    np.testing.assert_allclose(counts, [10 + 2 + 2, 20 + 2])


def test_extra_columns_are_tolerated_and_not_reported(built) -> None:
    _, _, report = built
    assert not any("mystery" in col or "future" in col for col in report.summary.columns)


def test_without_optional_files_and_with_separate_out(tmp_path: Path) -> None:
    folder, out = tmp_path / "res", tmp_path / "elsewhere" / "rep"
    write_results(folder, histograms=False, layers=False, spectra=False, samples=False)
    report = build_report(folder, out)
    assert all(p.is_relative_to(out) and p.is_file() for p in report.files)
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["clip_frac.png", "w_vs_step.png"]
    text = (out / "report.md").read_text(encoding="utf-8")
    plots = [f"plots/{name}.png" for name in ("weight_hist", *NEW_PLOTS)]
    for skipped in (*plots, "act_grad_slope", "effective_rank", "Figure 1"):
        assert skipped not in text
    assert "| arm | n | grad_norm_interp | modes_covered | high_quality_frac |" in text
    assert not (folder / "report.md").exists()
    # The new runs.csv columns are still summarised; files that are absent add nothing.
    assert "modes_covered_mean" in report.summary.columns
    assert "act_grad_slope_mean" not in report.summary.columns
    assert "effective_rank_mean" not in report.summary.columns
    assert "act_slope" not in report.table


def test_header_only_layers_empty_spectra_and_1d_samples_are_skipped(tmp_path: Path) -> None:
    # A live sweep: layers.csv has only its header, spectra.csv no bytes yet; and 1-D data
    # has samples but nothing to draw in the plane.
    written = write_results(tmp_path, histograms=False, samples=False)
    _write_samples(tmp_path / "samples.npz", written, dim=1, surface=False)
    (tmp_path / "layers.csv").write_text(
        "run_id,constraint,c,gp_lambda,seed,step,layer,name,act_grad_norm,weight_grad_norm,"
        "clip_frac\n",
        encoding="utf-8",
    )
    (tmp_path / "spectra.csv").write_text("", encoding="utf-8")
    report = build_report(tmp_path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "clip_frac.png",
        "w_vs_step.png",
    ]
    assert "act_grad_slope_mean" not in report.summary.columns


def test_samples_without_a_surface_give_only_the_scatter(tmp_path: Path) -> None:
    written = write_results(tmp_path, histograms=False, layers=False, spectra=False)
    _write_samples(tmp_path / "samples.npz", written, surface=False)
    report = build_report(tmp_path)
    names = sorted(p.name for p in report.files if p.suffix == ".png")
    assert names == ["clip_frac.png", "samples.png", "w_vs_step.png"]
    _assert_not_blank(tmp_path / "plots" / "samples.png")


def test_image_samples_get_a_grid_per_arm(tmp_path: Path) -> None:
    written = write_results(tmp_path, histograms=False, layers=False, spectra=False)
    _write_samples(tmp_path / "samples.npz", written, dim=12, surface=False)
    with np.load(tmp_path / "samples.npz") as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "samples.npz", **arrays, image_shape=np.array([4, 3, 1]))
    report = build_report(tmp_path)
    names = sorted(p.name for p in report.files if p.suffix == ".png")
    assert names == ["clip_frac.png", "image_grid.png", "w_vs_step.png"]
    _assert_not_blank(tmp_path / "plots" / "image_grid.png")
    np.savez(tmp_path / "samples.npz", **arrays, image_shape=np.array([5, 5, 1]))
    with pytest.raises(WganError, match="image_shape"):
        build_report(tmp_path)


def test_first_seed_runs_map_run_ids_not_positions(built) -> None:
    folder, _, _ = built
    runs = assign_arms(read_runs(folder / "runs.csv"))
    kept = runs[runs["status"] != "diverged"]
    samples = read_samples(folder / "samples.npz")
    picks = first_seed_runs(kept, summarise(runs), samples)
    assert [arm for arm, _, _ in picks] == ARMS_IN_ORDER
    chosen = {arm: str(samples.run_ids[index]) for arm, index, _ in picks}
    assert chosen["clip c=0.01"] == "clip-0.01-s0"  # stored after s1 in samples.npz
    assert chosen["clip c=0.1"] == "clip-0.1-s0"
    assert chosen["gp λ=10"] == "gp-s0"
    assert [seed for _, _, seed in picks] == [0] * len(ARMS_IN_ORDER)


def test_samples_with_wrong_shapes(tmp_path: Path) -> None:
    write_results(tmp_path, histograms=False, samples=False)
    np.savez(
        tmp_path / "samples.npz",
        run_ids=np.array(["a", "b"]),
        samples=np.zeros((2, 10, 2)),
        axis=np.linspace(-1, 1, 5),
        values=np.zeros((2, 5, 4)),
    )
    with pytest.raises(WganError, match=r"samples\.npz has inconsistent arrays") as info:
        build_report(tmp_path)
    assert "values (2, 5, 4)" in str(info.value)


def test_missing_runs_csv_names_it(tmp_path: Path) -> None:
    write_results(tmp_path, histograms=False)
    (tmp_path / "runs.csv").unlink()
    with pytest.raises(WganError, match=r"runs\.csv"):
        build_report(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(WganError, match="does not exist"):
        build_report(tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("metrics.csv", "", r"metrics\.csv is empty"),
        ("runs.csv", "", r"runs\.csv is empty"),
        ("metrics.csv", "run_id,step,w_estimate,w1_true,clip_frac\n", r"metrics\.csv has no rows"),
        ("runs.csv", "run_id,constraint,c\nA,clip,0.01\n", r"runs\.csv lacks .*status"),
        ("metrics.csv", "run_id,step\nA,0\n", r"metrics\.csv lacks .*w_estimate"),
        ("histograms.npz", "not a zip", r"histograms\.npz cannot be read"),
        ("layers.csv", "run_id,step\nA,0\n", r"layers\.csv lacks .*act_grad_norm"),
        ("spectra.csv", "run_id,layer\nA,0\n", r"spectra\.csv lacks .*effective_rank"),
        ("samples.npz", "not a zip", r"samples\.npz cannot be read"),
    ],
)
def test_unusable_files_give_one_line_errors(
    tmp_path: Path, name: str, content: str, pattern: str
) -> None:
    write_results(tmp_path, histograms=False)
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(WganError, match=pattern) as info:
        build_report(tmp_path)
    assert "\n" not in str(info.value)


def test_histograms_with_wrong_shapes(tmp_path: Path) -> None:
    write_results(tmp_path, histograms=False)
    np.savez(
        tmp_path / "histograms.npz",
        run_ids=np.array(["a"]),
        layer_names=np.array(["l"]),
        edges_rel=np.linspace(-1, 1, 5),
        scale=np.array([0.01]),
        counts=np.zeros((1, 1, 3), dtype=int),
    )
    with pytest.raises(WganError, match=r"histograms\.npz has inconsistent arrays"):
        build_report(tmp_path)


# ---------------------------------------------------------------- curves and axes


def test_rolling_median_per_run_centred_and_skipping_gaps() -> None:
    r1 = [5.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    r2 = [1.0, 1.0, 1.0, 1.0, NAN, 3.0, 3.0, 3.0, 3.0, 3.0]
    curves = pd.DataFrame(
        {
            "run_id": ["r1"] * 10 + ["r2"] * 10,
            "step": [10 * i for i in range(10)] * 2,
            "w": r1 + r2,
        }
    )
    # Rows shuffled: the median must follow each run's own steps, not the row order.
    curves = curves.sample(frac=1.0, random_state=3)
    smooth = rolling_median(curves, "w", window=5)
    by_step = {
        run: dict(zip(rows["step"], smooth[rows.index], strict=True))
        for run, rows in curves.groupby("run_id")
    }
    # r1: windows of 5 around each step, cut at the ends: [5,1,4] 4; [5,1,4,1] 2.5;
    # [5,1,4,1,5] 4; [1,4,1,5,9] 4; [4,1,5,9,2] 4; [1,5,9,2,6] 5; [5,9,2,6,5] 5;
    # [9,2,6,5,3] 5; [2,6,5,3] 4; [6,5,3] 5.
    expected = [4.0, 2.5, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0, 4.0, 5.0]
    assert by_step["r1"] == {10 * i: v for i, v in enumerate(expected)}
    # r2: the missing value is skipped: [1,1,1,3] 1 at step 30, [1,1,3,3] 2 at 40 (the gap
    # itself), [1,3,3,3] 3 at step 50.
    assert [by_step["r2"][step] for step in (30, 40, 50)] == [1.0, 2.0, 3.0]


def test_short_runs_get_a_shorter_median_window() -> None:
    assert [median_window(n) for n in (1, 2, 3, 4, 6, 9, 10, 200)] == [1, 1, 1, 1, 3, 3, 5, 5]
    # Two logged steps stay two values, not one average drawn flat.
    curves = pd.DataFrame({"run_id": ["r", "r"], "step": [10, 20], "w": [1.0, 3.0]})
    assert list(rolling_median(curves, "w")) == [1.0, 3.0]


def _symlog_figure() -> Figure:
    """The default sweep's shape of w_estimate: c=0.001 near 1e-7 and changing sign, c=0.01
    near 3e-3, c=0.1 from -0.1 to 10 (the plot whose labels 1e-8, 0, -1e-8 overlapped)."""
    steps = np.arange(50, 1001, 50)
    rng = np.random.default_rng(0)
    values = {
        "clip c=0.001": 1e-7 * rng.normal(1.0, 1.5, steps.size),
        "clip c=0.01": 3e-3 * (1 + 0.1 * rng.normal(size=steps.size)),
        "clip c=0.1": np.concatenate([[-0.1, -0.05], np.linspace(0.1, 10, steps.size - 2)]),
    }
    curves = pd.concat(
        pd.DataFrame({"run_id": arm, "arm": arm, "step": steps, "w_estimate": v, "w1_true": 0.3})
        for arm, v in values.items()
    )
    return _plot_w(curves, list(values), arm_colours(values))


def test_symlog_tick_labels_do_not_overlap() -> None:
    fig = _symlog_figure()
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog"
    low, high = sorted(ax.get_ylim())
    labels = [
        label
        for label, tick in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
        if label.get_text() and low <= tick <= high
    ]
    assert 3 <= len(labels) <= 8
    assert "0" in [label.get_text() for label in labels]
    boxes = sorted((label.get_window_extent() for label in labels), key=lambda b: b.y0)
    for below, above in itertools.pairwise(boxes):
        assert above.y0 >= below.y1, "tick labels overlap"


def test_y_scale_choice() -> None:
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert scale_y(axes[0], np.array([0.2, 0.5, 1.0])) == "linear"
    assert scale_y(axes[1], np.array([1e-9, 1e-3, 10.0, NAN])) == "log"  # all positive
    assert scale_y(axes[2], np.array([-1e-3, 0.0, 1e-8, 5.0])) == "symlog"
    major, _ = symlog_ticks(np.array([-1e-3, 0.0, 1e-8, 5.0]), -8)
    assert 0.0 in major and all(abs(t) >= 1e-8 or t == 0 for t in major)


def test_weight_histogram_counts_on_a_log_axis() -> None:
    fig = Figure()
    ax = fig.subplots()
    row = pd.Series({"arm": "clip c=0.01", "constraint": "clip", "c": 0.01})
    edges = np.linspace(-0.011, 0.011, 12)
    counts = np.array([5000, 3, 0, 7, 20, 25, 20, 7, 0, 4, 6000], dtype=float)
    _plot_arm_histogram(ax, (edges, counts), row, (0.1, 0.2, 0.7, 1.0))
    assert ax.get_yscale() == "log"
    bottom, top = ax.get_ylim()
    assert 0 < bottom < 3 and top >= 6000  # the interior's 3 and the pile-up both visible


# ---------------------------------------------------------------- formats and folders


def test_parse_formats() -> None:
    assert parse_formats(None) == ("md", "html", "csv")
    assert parse_formats([]) == ("md", "html", "csv")
    assert parse_formats(["csv,md"]) == ("md", "csv")
    assert parse_formats([" HTML ", "csv"]) == ("html", "csv")
    with pytest.raises(WganError, match=r"'pdf'.*md, html, csv"):
        parse_formats(["md,pdf"])


def _minimal(folder: Path, **kwargs: bool) -> Written:
    options = {"histograms": False, "layers": False, "spectra": False, "samples": False}
    return write_results(folder, **(options | kwargs))


def test_csv_alone_writes_no_plots(tmp_path: Path) -> None:
    _minimal(tmp_path)
    report = build_report(tmp_path, formats=["csv"])
    assert report.files == [tmp_path / "summary.csv"]
    assert not (tmp_path / "plots").exists()
    assert list(report.summary["arm"]) == ARMS_IN_ORDER


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    """Two sweeps with the same run ids and arms, only the two plots every sweep has."""
    root = tmp_path_factory.mktemp("multi")
    _minimal(root / "sweeps" / "a")
    _minimal(root / "sweeps" / "b")
    out = root / "report"
    folders = [root / "sweeps" / "a", root / "sweeps" / "b"]
    return out, build_report(folders, out, formats=["md", "csv"])


def test_several_folders_keep_arms_and_runs_apart(two_folders) -> None:
    out, report = two_folders
    summary = report.summary
    assert list(summary.columns[:2]) == ["folder", "arm"]
    assert list(summary["arm"]) == [f"{f}: {arm}" for f in ("a", "b") for arm in ARMS_IN_ORDER]
    assert list(summary["folder"]) == ["a"] * 6 + ["b"] * 6
    # Equal run ids in both folders are kept apart: each arm has its own folder's counts.
    single = summarise(assign_arms(read_runs(out.parent / "sweeps" / "a" / "runs.csv")))
    for f in ("a", "b"):
        mine = summary[summary["folder"] == f].reset_index(drop=True)
        for col in ("n", "n_diverged", "n_unfinished", "w1_true_mean", "clip_frac_std"):
            pd.testing.assert_series_equal(mine[col], single[col], check_names=False)
    on_disk = pd.read_csv(out / "summary.csv")
    assert list(on_disk["arm"]) == list(summary["arm"])


def test_several_folders_report_md(two_folders) -> None:
    out, report = two_folders
    names = sorted(p.relative_to(out).as_posix() for p in report.files)
    assert names == [
        "plots/clip_frac.png",
        "plots/w_vs_step.png",
        "report.md",
        "summary.csv",
    ]
    text = (out / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# WGAN report: a vs b")
    assert "## Results folders" in text and "**a**" in text and "**b**" in text
    assert "`a/clip-0.1-s1` (a: clip c=0.1, seed 1): diverged at step 50" in text
    assert "`b/clip-0.01-s2` (b: clip c=0.01, seed 2): running, 100 steps done" in text
    assert "| b: gp λ=10 |" in text
    assert "(lower is better)" in text
    for png in (p for p in report.files if p.suffix == ".png"):
        _assert_not_blank(png)


def test_read_folder_prefixes_every_run_id(tmp_path: Path) -> None:
    _minimal(tmp_path / "x", histograms=True, layers=True, samples=True)
    data = read_folder(tmp_path / "x", "x")
    assert all(r.startswith("x/") for r in data.runs["run_id"])
    assert all(a.startswith("x: ") for a in data.runs["arm"])
    assert all(r.startswith("x/") for r in data.metrics["run_id"])
    assert all(r.startswith("x/") for r in data.layers["run_id"])
    assert all(r.startswith("x/") for r in data.hist.run_ids)
    assert all(r.startswith("x/") for r in data.samples.run_ids)
    alone = read_folder(tmp_path / "x")
    assert "folder" not in alone.runs.columns
    assert list(alone.runs["run_id"]) == [r.removeprefix("x/") for r in data.runs["run_id"]]


def test_each_arm_draws_its_own_folders_samples(tmp_path: Path) -> None:
    # The same run ids in both folders, different samples: each arm's panel must show its
    # own folder's run, and a folder without samples.npz gives no panels.
    _minimal(tmp_path / "a", samples=True)
    _minimal(tmp_path / "b", samples=True)
    _minimal(tmp_path / "c")
    data = [read_folder(tmp_path / f, f) for f in ("a", "b", "c")]
    runs = pd.concat([d.runs for d in data], ignore_index=True)
    summary = summarise(runs)
    picks = _sample_picks(
        data, runs[runs["status"] != "diverged"], summary, lambda s: s.samples.shape[2] == 2
    )
    assert [arm for arm, *_ in picks] == [f"{f}: {a}" for f in ("a", "b") for a in ARMS_IN_ORDER]
    for arm, samples, index, _ in picks:
        folder = arm.split(":")[0]
        assert samples is data["ab".index(folder)].samples
        assert samples.run_ids[index].startswith(f"{folder}/")


def test_each_arm_draws_its_own_folders_histogram(tmp_path: Path) -> None:
    _minimal(tmp_path / "a", histograms=True)
    _minimal(tmp_path / "b")
    data = [read_folder(tmp_path / f, f) for f in ("a", "b")]
    runs = pd.concat([d.runs for d in data], ignore_index=True)
    summary = summarise(runs)
    hists = {d.source.label: d.hist for d in data if d.hist is not None}
    kept = runs[runs["status"] != "diverged"]
    fig = _plot_histograms(hists, kept, summary, arm_colours(summary["arm"]))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(summary["arm"])
    for ax in panels:
        texts = [t.get_text() for t in ax.texts]
        if ax.get_title().startswith("a: "):
            assert ax.patches and ax.get_yscale() == "log" and not texts, ax.get_title()
        else:
            assert texts == ["no histogram"], ax.get_title()


def test_folder_labels_add_parents_until_distinct(tmp_path: Path) -> None:
    assert folder_labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    labels = folder_labels([tmp_path / "x" / "res", tmp_path / "y" / "res"])
    assert labels == ["x/res", "y/res"]


def test_several_folders_need_out(tmp_path: Path) -> None:
    _minimal(tmp_path / "a")
    _minimal(tmp_path / "b")
    with pytest.raises(WganError, match="--out") as info:
        build_report([tmp_path / "a", tmp_path / "b"])
    assert "\n" not in str(info.value)
    with pytest.raises(WganError, match="given twice"):
        build_report([tmp_path / "a", tmp_path / "b" / ".." / "a"], tmp_path / "o")
    with pytest.raises(WganError, match=r"results folder .*nope does not exist"):
        build_report([tmp_path / "a", tmp_path / "nope"], tmp_path / "o")


def test_cli_report_formats_and_folders(tmp_path: Path) -> None:
    _minimal(tmp_path / "a")
    _minimal(tmp_path / "b")
    a, b, out = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "out")
    runner = CliRunner()
    result = runner.invoke(app, ["report", a, b, "--out", out, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "a: clip c=0.001" in result.stdout and "b: none" in result.stdout
    assert "better: w1_true lower" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.csv"]
    for args, needle in [
        ([a, b], "--out"),
        ([a, "--format", "pdf"], "pdf"),
        ([a, str(tmp_path / "missing"), "--out", out], "missing"),
    ]:
        failed = runner.invoke(app, ["report", *args])
        assert failed.exit_code == 2, (args, failed.output)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_image_tiles_sit_row_by_row_with_a_gap_between() -> None:
    from wgan_cli.report import _tile

    flat = np.arange(3 * 4, dtype=float).reshape(3, 4) / 100  # three 2 x 2 images
    tile = _tile(flat, (2, 2, 1), side=2)
    assert tile.shape == (5, 5)  # 2 images + 1 gap each way
    np.testing.assert_array_equal(tile[:2, :2], [[0.0, 0.01], [0.02, 0.03]])
    np.testing.assert_array_equal(tile[:2, 3:], [[0.04, 0.05], [0.06, 0.07]])
    np.testing.assert_array_equal(tile[3:, :2], [[0.08, 0.09], [0.10, 0.11]])
    np.testing.assert_array_equal(tile[3:, 3:], -np.ones((2, 2)))  # no fourth image: blank
    assert np.isnan(tile[2]).all() and np.isnan(tile[:, 2]).all()
