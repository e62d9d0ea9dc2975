"""Turn a results folder written by `wgan sweep` into summary.csv, report.md and plots.

Everything here reads only the results folder, so a report can be rebuilt at any time (also
while a sweep is still running) without touching training code or a device. runs.csv and
metrics.csv are required; histograms.npz, layers.csv, spectra.csv and samples.npz are
optional, and a section whose file is absent (or has no rows yet) is left out, never an error.

Figures are built with `matplotlib.figure.Figure` directly rather than pyplot: that renders
with Agg without switching the process-wide backend (which would disturb a notebook that
imports this module) and leaves no global figure registry to leak or close.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wgan_cli.errors import WganError

RUN_COLUMNS = ("run_id", "constraint", "c", "gp_lambda", "seed", "status")
SUMMARY_METRICS = (
    "w_estimate",
    "w1_true",
    "lipschitz_ratio",
    "clip_frac",
    "weight_abs_max",
    "grad_norm_real",
    "grad_norm_fake",
    "critic_loss",
)
CURVE_METRICS = ("w_estimate", "w1_true", "clip_frac")
METRIC_COLUMNS = ("run_id", "step", *CURVE_METRICS)
# Short headers keep the terminal table near 100 columns.
TABLE_METRICS = {
    "w_estimate": "w_estimate",
    "w1_true": "w1_true",
    "clip_frac": "clip_frac",
    "weight_abs_max": "|w|max",
    "grad_norm_real": "grad_real",
}
HIST_KEYS = ("run_ids", "layer_names", "edges_rel", "scale", "counts")
# Per-run diagnostics beyond SUMMARY_METRICS, each summarised only where its source exists:
# act_grad_slope from layers.csv, effective_rank from spectra.csv, the rest from runs.csv.
OPTIONAL_METRICS = (
    "act_grad_slope",
    "effective_rank",
    "grad_norm_interp",
    "modes_covered",
    "high_quality_frac",
)
RUNS_OPTIONAL_METRICS = ("grad_norm_interp", "modes_covered", "high_quality_frac")
LAYER_COLUMNS = ("run_id", "step", "layer", "act_grad_norm", "weight_grad_norm")
SPECTRA_COLUMNS = ("run_id", "layer", "effective_rank")
SAMPLE_KEYS = ("run_ids", "samples")
# Scatter colours shared by samples.png and surfaces.png; arm colours stay for lines.
REAL_COLOUR = "black"
FAKE_COLOUR = "#ff7f0e"
MAX_SCATTER = 1000
# Known constraints first, in the order a reader compares them; unknown ones after, by name.
CONSTRAINT_ORDER = ("clip", "gp", "sn", "none")
# "None" is not missing here: it is never a status, and constraint "none" must stay a string.
NA_VALUES = ["", "nan", "NaN", "NA", "N/A", "<NA>", "null"]

METRIC_MEANINGS = {
    "w1_true": "exact Wasserstein-1 distance between generated and held-out real samples "
    "(optimal transport). **Lower is better**: the generator is closer to the data. This is "
    "the ground truth for comparing arms.",
    "w_estimate": "the critic's estimate of W1, mean f(real) - mean f(fake) on held-out "
    "samples. It equals W1 only for an optimal 1-Lipschitz critic; under clipping it is W1 "
    "times an unknown scale, so compare it with w1_true rather than reading it as a distance.",
    "lipschitz_ratio": "w_estimate / w1_true, the critic's effective Lipschitz scale K "
    "(the WGAN paper's K * W1). 1 means a tight 1-Lipschitz estimate; clipping typically "
    "gives K far below 1, which rescales the generator's gradients, so compare arms rather "
    "than demanding 1.",
    "clip_frac": "share of critic weights piled up within 1% of ±c. **Lower is healthier**: "
    "near 1 means the clip binds almost everywhere and the critic is close to a sign network. "
    "Empty for arms without clipping.",
    "weight_abs_max": "largest |weight| in the critic; under clipping it cannot exceed c.",
    "grad_norm_real": "mean ‖∇x f(x)‖ at real points. An optimal 1-Lipschitz critic has "
    "norm 1 there; a clipped critic scales it by K like w_estimate. Values near 0 mean the "
    "generator gets vanishing gradients.",
    "grad_norm_fake": "mean ‖∇x f(x)‖ at generated points, the gradient the generator "
    "actually trains on; read like grad_norm_real.",
    "critic_loss": "mean f(fake) - mean f(real) on training batches (the negative of "
    "w_estimate); shown for completeness, not a quality measure. Arms are never ranked by "
    "generator loss, whose scale depends on the critic.",
    "act_grad_slope": "least-squares slope of log10 ‖∂(W loss)/∂h_l‖ against hidden layer "
    "index l (0 = next to the input) at the last logged step; 10**slope is the factor per "
    "layer. The gradient is backpropagated from the output toward layer 0, so **> 0 means "
    "it shrinks on its way to the input (vanishing)**, < 0 that it grows (exploding), and "
    "about 0 that it passes through intact (what a gradient penalty aims for).",
    "effective_rank": "effective rank of the final critic's weight matrices (exp of the "
    "entropy of the normalised singular values), averaged over layers: how many directions "
    "the critic really uses. Clipping tends to collapse it.",
    "grad_norm_interp": "mean ‖∇x f(x)‖ at random interpolates between real and generated "
    "points, where the gradient penalty pins it to 1.",
    "modes_covered": "mixture modes with at least one generated sample within 3 std of the "
    "centre (gaussian mixtures only). **Higher is better**; fewer than the data's modes "
    "means mode collapse.",
    "high_quality_frac": "share of generated samples within 3 std of some mode (gaussian "
    "mixtures only). **Higher is better**: low means samples are smeared between modes.",
}
# One heading and one or two sentences per plot, keyed by file stem, in report.md.
PLOT_NOTES = {
    "w_vs_step": (
        "W estimate and true W1 against step",
        "The critic's estimate tracks the true W1 only up to its Lipschitz scale K, so compare "
        "shapes across arms on the left and distances on the right (lower is better).",
    ),
    "clip_frac": (
        "Clipping pile-up",
        "Share of weights within 1% of ±c; a value climbing towards 1 means the clip binds "
        "almost everywhere and the critic is close to a sign network.",
    ),
    "weight_hist": (
        "Final weight histograms",
        "Under clipping the weights pile up against the dashed ±c lines (a bimodal histogram); "
        "unconstrained, gradient-penalty and spectrally normalised critics spread smoothly.",
    ),
    "layer_grad_norms": (
        "Gradient norms per layer (WGAN-GP Figure 1b)",
        "Left: norm of the W loss gradient with respect to each hidden layer's activations; "
        "right: with respect to each layer's weights, at the last logged step (mean of log10 "
        "over seeds, band min to max). The gradient flows right to left: with a small c it "
        "shrinks by a roughly constant factor per layer on its way to the input (vanishing, a "
        "line rising to the right, act_grad_slope > 0), with a large c it can grow "
        "(exploding, falling to the right), and a gradient penalty keeps it roughly flat.",
    ),
    "surfaces": (
        "Critic value surfaces (WGAN-GP Figure 1a)",
        "The final critic's value over the plane (first seed of each arm, colour scale per "
        "panel), with real samples in black and generated samples in orange. A clipped "
        "critic's surface is much simpler than the data (close to a tilted plane or a few "
        "ridges), while a gradient penalty lets it follow the modes.",
    ),
    "samples": (
        "Generated vs real samples",
        "Final generated samples (orange) against held-out real samples (black), first seed "
        "of each arm: look for missing modes (collapse) and samples smeared between modes.",
    ),
}


@dataclass(frozen=True)
class Report:
    """What the CLI needs after building a report: data for callers, text to print, paths."""

    summary: pd.DataFrame
    table: str
    files: list[Path]


@dataclass(frozen=True)
class Samples:
    """Final generated samples per run and, for 2-D data, the critic's value surface."""

    run_ids: np.ndarray
    samples: np.ndarray  # (R, n, d)
    real: np.ndarray | None  # (R, m, d) held-out real samples
    axis: np.ndarray | None  # (G,) grid coordinates, the same for x and y
    values: np.ndarray | None  # (R, G, G): values[r, i, j] is at x=axis[j], y=axis[i]

    def index(self, run_id: str) -> int | None:
        hits = np.flatnonzero(self.run_ids == run_id)
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class Histograms:
    """The final critics' weight histograms; kept as arrays so arms can sum their runs."""

    run_ids: np.ndarray
    edges_rel: np.ndarray
    scale: np.ndarray
    counts: np.ndarray


def build_report(folder: Path, out: Path | None = None) -> Report:
    """Read a results folder and write summary.csv, report.md and plots/ into `out`.

    `out` defaults to the folder itself so a results folder is self-describing.
    """
    folder = Path(folder)
    out = folder if out is None else Path(out)
    if not folder.is_dir():
        raise WganError(f"results folder {folder} does not exist")
    runs = assign_arms(read_runs(folder / "runs.csv"))
    metrics = read_metrics(folder / "metrics.csv")
    hist = read_histograms(folder / "histograms.npz")
    layers = read_layers(folder / "layers.csv")
    spectra = read_spectra(folder / "spectra.csv")
    samples = read_samples(folder / "samples.npz")
    runs = add_run_diagnostics(runs, layers, spectra)
    summary = summarise(runs)
    colours = arm_colours(summary["arm"])
    plots = _write_plots(
        out / "plots", runs, metrics, hist, summary, colours, layers=layers, samples=samples
    )
    name = _sweep_name(folder)
    files = [
        _write_text(out / "summary.csv", summary.to_csv(index=False)),
        _write_text(out / "report.md", render_markdown(name, runs, summary, plots, out)),
        *plots,
    ]
    return Report(summary=summary, table=render_table(summary), files=files)


# ---------------------------------------------------------------- reading


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a results CSV, turning every way it can be unusable into one line naming it."""
    if not path.is_file():
        raise WganError(f"{path} not found (is this a results folder written by `wgan sweep`?)")
    df = _parse_csv(path)
    if df is None:
        raise WganError(f"{path} is empty")
    _check_columns(path, df, required)
    if df.empty:
        raise WganError(f"{path} has no rows")
    return df


def _read_optional_csv(path: Path, required: Sequence[str]) -> pd.DataFrame | None:
    """Like _read_csv for a file older sweeps lack: absent, empty or header-only is None
    (a live sweep may not have written a row yet), but a garbled file is still an error."""
    if not path.exists():
        return None
    df = _parse_csv(path)
    if df is None:
        return None
    _check_columns(path, df, required)
    return None if df.empty else df


def _parse_csv(path: Path) -> pd.DataFrame | None:
    """The CSV as strings and NaN; None for a file with no content at all."""
    try:
        return pd.read_csv(path, dtype={"run_id": str}, keep_default_na=False, na_values=NA_VALUES)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WganError(f"{path} cannot be read as CSV: {first_line}") from None
    except OSError as err:
        raise WganError(f"cannot read {path}: {err.strerror or err}") from None


def _check_columns(path: Path, df: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise WganError(f"{path} lacks required column(s): {', '.join(missing)}")


def _to_numeric(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Coerce value columns to float so one odd cell shows up as a gap, not a crash."""
    df = df.copy()
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").astype(float)
        df[col] = values.replace([np.inf, -np.inf], np.nan)
    return df


def read_runs(path: Path) -> pd.DataFrame:
    """Load runs.csv; a resumed sweep may append a run again, so the last row per run wins."""
    df = _read_csv(path, (*RUN_COLUMNS, *SUMMARY_METRICS))
    optional = [col for col in RUNS_OPTIONAL_METRICS if col in df.columns]
    df = _to_numeric(df, ("c", "gp_lambda", "seed", *SUMMARY_METRICS, *optional))
    for col in ("run_id", "constraint", "status"):
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str).str.strip()
    df["constraint"] = df["constraint"].replace("", "unknown")
    return df.drop_duplicates("run_id", keep="last").reset_index(drop=True)


def read_metrics(path: Path) -> pd.DataFrame:
    """Load metrics.csv; rows without a usable step cannot be placed on a curve and are dropped."""
    df = _read_csv(path, METRIC_COLUMNS)
    df = _to_numeric(df, ("step", *CURVE_METRICS))
    df["run_id"] = df["run_id"].astype(str).str.strip()
    return df.dropna(subset=["step"])


def read_layers(path: Path) -> pd.DataFrame | None:
    """Load layers.csv (per run, logged step and layer gradient norms) if the sweep wrote it.

    A resumed sweep may log a step again, so the last row per (run, step, layer) wins.
    """
    df = _read_optional_csv(path, LAYER_COLUMNS)
    if df is None:
        return None
    df = _to_numeric(df, ("step", "layer", "act_grad_norm", "weight_grad_norm"))
    df["run_id"] = df["run_id"].astype(str).str.strip()
    df = df.dropna(subset=["step", "layer"])
    return df.drop_duplicates(["run_id", "step", "layer"], keep="last").reset_index(drop=True)


def read_spectra(path: Path) -> pd.DataFrame | None:
    """Load spectra.csv (per run and layer, the final weights' spectrum) if present."""
    df = _read_optional_csv(path, SPECTRA_COLUMNS)
    if df is None:
        return None
    df = _to_numeric(df, ("layer", "effective_rank"))
    df["run_id"] = df["run_id"].astype(str).str.strip()
    df = df.dropna(subset=["layer"])
    return df.drop_duplicates(["run_id", "layer"], keep="last").reset_index(drop=True)


def read_samples(path: Path) -> Samples | None:
    """Load samples.npz if present; `real`, and `axis` with `values`, are optional inside."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in SAMPLE_KEYS if key not in npz.files]
            if missing:
                raise WganError(f"{path} lacks array(s): {', '.join(missing)}")
            keys = (*SAMPLE_KEYS, "real", "axis", "values")
            arrays = {key: npz[key] for key in keys if key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise WganError(f"{path} cannot be read: {err}") from None
    return _check_samples(path, arrays)


def _check_samples(path: Path, arrays: dict[str, np.ndarray]) -> Samples:
    """Reject shapes the plots could not index, naming every array's shape."""
    n_runs = len(arrays["run_ids"])
    samples = np.asarray(arrays["samples"], dtype=float)
    real = arrays.get("real")
    axis, values = arrays.get("axis"), arrays.get("values")
    ok = samples.ndim == 3 and samples.shape[0] == n_runs
    if real is not None:
        real = np.asarray(real, dtype=float)
        ok &= real.ndim == 3 and real.shape[0] == n_runs and real.shape[2:] == samples.shape[2:]
    if (axis is None) != (values is None):
        ok = False
    elif axis is not None:
        axis, values = np.asarray(axis, dtype=float), np.asarray(values, dtype=float)
        ok &= axis.ndim == 1 and values.shape == (n_runs, axis.size, axis.size)
        ok &= bool(np.all(np.diff(axis) > 0))
    if not ok:
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in arrays.items())
        raise WganError(f"{path} has inconsistent arrays (axis must increase): {shapes}")
    return Samples(
        run_ids=np.asarray(arrays["run_ids"]).astype(str),
        samples=samples,
        real=real,
        axis=axis,
        values=values,
    )


def read_histograms(path: Path) -> Histograms | None:
    """Load histograms.npz if the sweep saved one; a broken file is an error, not a skip."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in HIST_KEYS if key not in npz.files]
            if missing:
                raise WganError(f"{path} lacks array(s): {', '.join(missing)}")
            arrays = {key: npz[key] for key in HIST_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise WganError(f"{path} cannot be read: {err}") from None
    return _check_histograms(path, arrays)


def _check_histograms(path: Path, arrays: dict[str, np.ndarray]) -> Histograms:
    """Reject inconsistent shapes up front so plotting never fails with an index error."""
    counts = np.asarray(arrays["counts"])
    edges = np.asarray(arrays["edges_rel"], dtype=float)
    n_runs = len(arrays["run_ids"])
    if (
        counts.ndim != 3
        or edges.ndim != 1
        or counts.shape[0] != n_runs
        or counts.shape[2] != edges.size - 1
        or np.shape(arrays["scale"]) != (n_runs,)
        or not np.all(np.diff(edges) > 0)
    ):
        raise WganError(
            f"{path} has inconsistent arrays (edges_rel must increase): "
            f"counts {counts.shape}, edges_rel {edges.shape}, "
            f"scale {np.shape(arrays['scale'])}, run_ids ({n_runs},)"
        )
    return Histograms(
        run_ids=np.asarray(arrays["run_ids"]).astype(str),
        edges_rel=edges,
        scale=np.asarray(arrays["scale"], dtype=float),
        counts=counts,
    )


def _sweep_name(folder: Path) -> str:
    """The manifest's name if it has a readable one; the report must not fail over metadata."""
    try:
        name = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else folder.resolve().name


# ---------------------------------------------------------------- arms and summary


def arm_label(constraint: str, c: float, gp_lambda: float) -> str:
    """Name an arm by the one setting that matters for its constraint."""
    if constraint == "clip":
        return f"clip c={c:g}"
    if constraint == "gp":
        return f"gp λ={gp_lambda:g}"
    if constraint in ("sn", "none"):
        return constraint
    settings = [f"c={c:g}"] if not math.isnan(c) else []
    settings += [f"λ={gp_lambda:g}"] if not math.isnan(gp_lambda) else []
    return " ".join([constraint, *settings])


def _arm_setting(constraint: str, c: float, gp_lambda: float) -> tuple[float, float]:
    """Blank the setting a constraint ignores, so a stray default cannot split an arm."""
    if constraint == "clip":
        return c, math.nan
    if constraint == "gp":
        return math.nan, gp_lambda
    if constraint in ("sn", "none"):
        return math.nan, math.nan
    return c, gp_lambda


def assign_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """Add arm, arm_c, arm_lambda columns: the key every table and plot groups by."""
    runs = runs.copy()
    settings = [
        _arm_setting(k, c, lam)
        for k, c, lam in zip(runs["constraint"], runs["c"], runs["gp_lambda"], strict=True)
    ]
    runs["arm_c"] = [c for c, _ in settings]
    runs["arm_lambda"] = [lam for _, lam in settings]
    runs["arm"] = [
        arm_label(k, c, lam)
        for k, c, lam in zip(runs["constraint"], runs["arm_c"], runs["arm_lambda"], strict=True)
    ]
    return runs


def _constraint_rank(constraint: str) -> int:
    return CONSTRAINT_ORDER.index(constraint) if constraint in CONSTRAINT_ORDER else 99


def last_step_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at its own last logged step (runs of a live sweep may differ)."""
    last = layers.groupby("run_id")["step"].transform("max")
    return layers[layers["step"] == last]


def ls_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x; NaN unless x takes at least two values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.unique(x).size < 2:
        return math.nan
    dx = x - x.mean()
    return float(dx @ (y - y.mean()) / (dx @ dx))


def act_grad_slopes(layers: pd.DataFrame) -> pd.Series:
    """Per run: slope of log10(act_grad_norm) against layer index at its last logged step.

    Layers without a positive finite norm (the output layer, a dead layer) are left out.
    """
    last = last_step_rows(layers)
    usable = last[last["act_grad_norm"] > 0]
    slopes = {
        run_id: ls_slope(rows["layer"], np.log10(rows["act_grad_norm"]))
        for run_id, rows in usable.groupby("run_id")
    }
    return pd.Series(slopes, name="act_grad_slope", dtype=float)


def add_run_diagnostics(
    runs: pd.DataFrame, layers: pd.DataFrame | None, spectra: pd.DataFrame | None
) -> pd.DataFrame:
    """Add per-run act_grad_slope and effective_rank (mean over layers) where their files
    exist, so summarise() treats them like any final metric."""
    runs = runs.copy()
    if layers is not None:
        runs["act_grad_slope"] = runs["run_id"].map(act_grad_slopes(layers)).astype(float)
    if spectra is not None:
        ranks = spectra.groupby("run_id")["effective_rank"].mean()
        runs["effective_rank"] = runs["run_id"].map(ranks).astype(float)
    return runs


def summary_metrics(frame: pd.DataFrame) -> list[str]:
    """SUMMARY_METRICS, then the optional ones whose source exists (a column of runs)."""
    return [*SUMMARY_METRICS, *(m for m in OPTIONAL_METRICS if m in frame.columns)]


def _optional_stats(summary: pd.DataFrame) -> list[str]:
    """Optional metrics with a value for some arm: the ones worth a column in report.md."""
    return [
        m
        for m in OPTIONAL_METRICS
        if f"{m}_mean" in summary.columns and summary[f"{m}_mean"].notna().any()
    ]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm; only done runs are averaged so a blow-up cannot skew a mean."""
    metrics = summary_metrics(runs)
    rows = [_summarise_arm(arm, group, metrics) for arm, group in runs.groupby("arm", sort=False)]
    summary = pd.DataFrame(rows)
    summary["_rank"] = summary["constraint"].map(_constraint_rank)
    summary = summary.sort_values(
        ["_rank", "constraint", "c", "gp_lambda", "arm"], na_position="last", kind="stable"
    )
    return summary.drop(columns="_rank").reset_index(drop=True)


def _summarise_arm(arm: str, group: pd.DataFrame, metrics: Sequence[str]) -> dict[str, object]:
    done = group[group["status"] == "done"]
    n_diverged = int((group["status"] == "diverged").sum())
    row: dict[str, object] = {
        "arm": arm,
        "constraint": group["constraint"].iloc[0],
        "c": group["arm_c"].iloc[0],
        "gp_lambda": group["arm_lambda"].iloc[0],
        "n": len(done),
        "n_diverged": n_diverged,
        "n_unfinished": len(group) - len(done) - n_diverged,
    }
    for metric in metrics:
        row[f"{metric}_mean"] = done[metric].mean()
        row[f"{metric}_std"] = done[metric].std(ddof=1)
    return row


# ---------------------------------------------------------------- text


def format_mean_std(mean: float, std: float) -> str:
    """Three significant figures are enough to compare arms and keep the table narrow."""
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {std:.2g}"


def _cells(summary: pd.DataFrame, metrics: Iterable[str], counts: bool = True) -> list[list[str]]:
    metrics = list(metrics)
    return [
        [
            str(row["arm"]),
            str(row["n"]),
            *((str(row["n_diverged"]), str(row["n_unfinished"])) if counts else ()),
            *(format_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics),
        ]
        for _, row in summary.iterrows()
    ]


def render_table(summary: pd.DataFrame) -> str:
    """The plain-text table the CLI prints: aligned columns, a header, and how to read it.

    Of the optional diagnostics only act_grad_slope is printed (the one number that says
    whether gradients vanish or explode); report.md has the rest.
    """
    columns = dict(TABLE_METRICS)
    if "act_grad_slope" in _optional_stats(summary):
        columns["act_grad_slope"] = "act_slope"
    header = ["arm", "n", "div", "unf", *columns.values()]
    rows = [header, *_cells(summary, columns)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [_table_line(row, widths) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(
        "mean ± std over the n done runs (seeds); diverged (div) and unfinished (unf) runs "
        "are counted, never averaged."
    )
    return "\n".join(line.rstrip() for line in lines)


def _table_line(cells: list[str], widths: list[int]) -> str:
    """Arm names read best left-aligned, numbers right-aligned."""
    padded = [cells[0].ljust(widths[0])]
    padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join(padded)


def _markdown_table(summary: pd.DataFrame) -> str:
    header = ["arm", "n", "diverged", "unfinished", *SUMMARY_METRICS]
    rows = [header, ["---"] * len(header), *_cells(summary, SUMMARY_METRICS)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _diagnostics_section(summary: pd.DataFrame) -> list[str]:
    """A second table for the optional diagnostics, so neither table gets too wide to read."""
    metrics = _optional_stats(summary)
    if not metrics:
        return []
    header = ["arm", "n", *metrics]
    rows = [header, ["---"] * len(header), *_cells(summary, metrics, counts=False)]
    return [
        "## Diagnostics",
        "Final diagnostics from whichever of layers.csv, spectra.csv and the runs' mode and "
        "interpolate columns the sweep wrote; mean ± std over the same done runs.",
        "\n".join("| " + " | ".join(row) + " |" for row in rows),
    ]


def render_markdown(
    name: str, runs: pd.DataFrame, summary: pd.DataFrame, plots: list[Path], out: Path
) -> str:
    """A report a reader can follow without the code: numbers, their meaning, then pictures."""
    counts = runs["status"].value_counts()
    n_done, n_div = int(counts.get("done", 0)), int(counts.get("diverged", 0))
    shown = {*SUMMARY_METRICS, *_optional_stats(summary)}
    parts = [
        f"# WGAN report: {name}",
        f"{len(runs)} runs in {len(summary)} arms: {n_done} done, {n_div} diverged, "
        f"{len(runs) - n_done - n_div} unfinished.",
        "## Summary",
        "Final values, mean ± sample std (n - 1) over the done runs' seeds; a single run shows "
        "no std. Diverged and unfinished runs are counted but never averaged in.",
        _markdown_table(summary),
        *_diagnostics_section(summary),
        "## What the metrics mean",
        "\n".join(f"- **{m}**: {text}" for m, text in METRIC_MEANINGS.items() if m in shown),
        "## Plots",
        "Curves and histograms use every run that did not diverge (unfinished runs included, "
        "so a live sweep can be watched); lines are the mean over seeds, bands span min to "
        "max. Per-layer gradient norms use done runs only. Each arm keeps one colour in every "
        "plot.",
        *(_plot_section(p, out) for p in plots),
        *_diverged_section(runs),
    ]
    return "\n\n".join(parts) + "\n"


def _plot_section(plot: Path, out: Path) -> str:
    title, note = PLOT_NOTES.get(plot.stem, (plot.stem, ""))
    image = f"![{plot.stem}]({plot.relative_to(out).as_posix()})"
    return "\n\n".join(part for part in (f"### {title}", note, image) if part)


def _diverged_section(runs: pd.DataFrame) -> list[str]:
    """List diverged runs so they can be inspected rather than silently dropped."""
    diverged = runs[runs["status"] == "diverged"]
    if diverged.empty:
        return []
    step = diverged["diverged_step"] if "diverged_step" in runs else pd.Series(dtype=float)
    lines = [
        f"- `{r.run_id}` ({r.arm}, seed {_fmt_int(r.seed)}): step {_fmt_int(step.get(i))}"
        for i, r in diverged.iterrows()
    ]
    return ["## Diverged runs", "\n".join(lines)]


def _fmt_int(value: object) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "?" if pd.isna(number) else str(int(number))


# ---------------------------------------------------------------- plots


def arm_colours(arms: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """Fix one colour per arm up front so the same arm looks the same in every plot."""
    arms = list(arms)
    cmap = colormaps["tab10" if len(arms) <= 10 else "tab20"]
    return {arm: tuple(cmap(i % cmap.N)) for i, arm in enumerate(arms)}


def _write_plots(
    plot_dir: Path,
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    hist: Histograms | None,
    summary: pd.DataFrame,
    colours: dict[str, tuple[float, ...]],
    *,
    layers: pd.DataFrame | None = None,
    samples: Samples | None = None,
) -> list[Path]:
    """Write every plot whose input exists; a missing optional file skips its plot."""
    _mkdir(plot_dir)
    kept = runs[runs["status"] != "diverged"]
    curves = metrics.merge(kept[["run_id", "arm"]], on="run_id", how="inner")
    arms = list(summary["arm"])
    paths = [
        _save(_plot_w(curves, arms, colours), plot_dir / "w_vs_step.png"),
        _save(_plot_clip_frac(curves, arms, colours), plot_dir / "clip_frac.png"),
    ]
    if hist is not None:
        fig = _plot_histograms(hist, kept, summary, colours)
        paths.append(_save(fig, plot_dir / "weight_hist.png"))
    if layers is not None:
        done = runs.loc[runs["status"] == "done", ["run_id", "arm"]]
        last = last_step_rows(layers).merge(done, on="run_id", how="inner")
        if not last.empty:
            fig = _plot_layer_grad_norms(last, arms, colours)
            paths.append(_save(fig, plot_dir / "layer_grad_norms.png"))
    picks = first_seed_runs(kept, summary, samples) if samples is not None else []
    if samples is not None and picks and samples.samples.shape[2] == 2:
        if samples.values is not None:
            paths.append(_save(_plot_surfaces(samples, picks), plot_dir / "surfaces.png"))
        paths.append(_save(_plot_samples(samples, picks), plot_dir / "samples.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    try:
        fig.savefig(path, dpi=110)
    except OSError as err:
        raise WganError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def _plot_curves(
    ax: Axes,
    curves: pd.DataFrame,
    metric: str,
    arms: Sequence[str],
    colours: dict[str, tuple[float, ...]],
) -> None:
    """Mean over seeds per step with a min-max band, so seed spread is visible at a glance."""
    for arm in arms:
        rows = curves[curves["arm"] == arm].dropna(subset=[metric])
        if rows.empty:
            continue
        stats = rows.groupby("step")[metric].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], color=colours[arm], label=arm, lw=1.5)
        if rows["run_id"].nunique() > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colours[arm], alpha=0.2)
    ax.set_xlabel("generator step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    _maybe_symlog(ax, curves[metric])
    if ax.has_data():
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no {metric} values", ha="center", va="center", transform=ax.transAxes)


def _maybe_symlog(ax: Axes, values: pd.Series) -> None:
    """Clip arms' critic values differ by orders of magnitude across c; a linear axis would
    flatten all but the largest, so switch to symlog when magnitudes span over 100x."""
    magnitude = values.abs().dropna()
    magnitude = magnitude[magnitude > 0]
    if magnitude.empty:
        return
    low, high = magnitude.quantile(0.05), magnitude.max()
    if high / low > 100:
        ax.set_yscale("symlog", linthresh=float(low))


def _plot_w(curves: pd.DataFrame, arms: Sequence[str], colours: dict) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_est, ax_true = fig.subplots(1, 2, sharex=True)
    _plot_curves(ax_est, curves, "w_estimate", arms, colours)
    _plot_curves(ax_true, curves, "w1_true", arms, colours)
    ax_est.set_title("critic's W1 estimate")
    ax_true.set_title("true W1 (lower = closer to data)")
    return fig


def _plot_clip_frac(curves: pd.DataFrame, arms: Sequence[str], colours: dict) -> Figure:
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    _plot_curves(ax, curves, "clip_frac", arms, colours)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("share of critic weights at ±c")
    return fig


def arm_histograms(
    hist: Histograms, run_ids: Iterable[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Sum an arm's histograms over layers and runs, in weight units (edges_rel * scale).

    Within a clip arm every run has scale c and counts add bin by bin. Runs whose scales
    differ are first spread onto the widest run's bins (assuming weights are uniform within
    a bin), so an arm always gets one histogram. None when no run of the arm has one.
    """
    wanted = set(run_ids)
    rows = [
        r
        for r, run_id in enumerate(hist.run_ids)
        if run_id in wanted and math.isfinite(hist.scale[r]) and hist.scale[r] > 0
    ]
    if not rows:
        return None
    target = hist.edges_rel * max(float(hist.scale[r]) for r in rows)
    total = np.zeros(target.size - 1)
    for r in rows:
        edges = hist.edges_rel * float(hist.scale[r])
        layer_sum = hist.counts[r].sum(axis=0).astype(float)
        total += layer_sum if np.array_equal(edges, target) else _rebin(layer_sum, edges, target)
    return target, total


def _rebin(counts: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Move each source bin's count into target bins in proportion to their overlap."""
    low = np.maximum(src[:-1, None], dst[None, :-1])
    high = np.minimum(src[1:, None], dst[None, 1:])
    share = np.clip(high - low, 0.0, None) / np.diff(src)[:, None]
    return counts @ share


def _plot_histograms(
    hist: Histograms, kept: pd.DataFrame, summary: pd.DataFrame, colours: dict
) -> Figure:
    """One panel per arm: under clipping the weights pile up against the dashed ±c lines."""
    n = len(summary)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (_, row) in zip(axes, summary.iterrows(), strict=False):
        run_ids = kept.loc[kept["arm"] == row["arm"], "run_id"]
        _plot_arm_histogram(ax, arm_histograms(hist, run_ids), row, colours[row["arm"]])
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("final critic weights (all layers and seeds)")
    return fig


def _plot_arm_histogram(
    ax: Axes, summed: tuple[np.ndarray, np.ndarray] | None, row: pd.Series, colour: tuple
) -> None:
    if summed is not None:
        edges, counts = summed
        ax.stairs(counts, edges, fill=True, color=colour, alpha=0.75)
    else:
        ax.text(0.5, 0.5, "no histogram", ha="center", va="center", transform=ax.transAxes)
    if row["constraint"] == "clip" and math.isfinite(row["c"]):
        for x in (-row["c"], row["c"]):
            ax.axvline(x, color="black", ls="--", lw=1)
    ax.set_title(row["arm"], fontsize="medium")
    ax.set_xlabel("weight")
    ax.tick_params(labelsize="small")


def _plot_layer_grad_norms(last: pd.DataFrame, arms: Sequence[str], colours: dict) -> Figure:
    """WGAN-GP Figure 1b: per-layer gradient norms, one line per arm, log scale."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_act, ax_weight = fig.subplots(1, 2)
    _plot_layer_norms(ax_act, last, "act_grad_norm", arms, colours)
    _plot_layer_norms(ax_weight, last, "weight_grad_norm", arms, colours)
    ax_act.set_title("‖∂ W loss / ∂ activations‖ per hidden layer")
    ax_weight.set_title("‖∂ W loss / ∂ weights‖ per layer")
    ax_act.set_xlabel("hidden layer (0 = next to the input)  ←  backprop direction")
    ax_weight.set_xlabel("layer (0 = next to the input; last = output)")
    step = last["step"].max()
    fig.suptitle(f"critic gradient norms at the last logged step ({step:g}), done runs")
    # One legend outside both panels: inside, it would cover lines in one or the other.
    entries: dict[str, object] = {}
    for ax in (ax_act, ax_weight):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside right center", fontsize="small")
    return fig


def _plot_layer_norms(
    ax: Axes, last: pd.DataFrame, column: str, arms: Sequence[str], colours: dict
) -> None:
    """Mean of log10 over an arm's runs (a geometric mean, consistent with the slope), with
    a min-max band when the arm has more than one run."""
    usable = last[last[column] > 0].assign(log=lambda d: np.log10(d[column]))
    for arm in arms:
        rows = usable[usable["arm"] == arm]
        if rows.empty:
            continue
        stats = rows.groupby("layer")["log"].agg(["mean", "min", "max"])
        colour = colours[arm]
        ax.plot(stats.index, 10 ** stats["mean"], color=colour, marker="o", lw=1.5, label=arm)
        if rows["run_id"].nunique() > 1:
            ax.fill_between(
                stats.index, 10 ** stats["min"], 10 ** stats["max"], color=colour, alpha=0.2
            )
    ax.set_ylabel(column)
    ax.grid(alpha=0.3, which="both")
    if ax.has_data():
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, f"no {column} values", ha="center", va="center", transform=ax.transAxes)


def first_seed_runs(
    kept: pd.DataFrame, summary: pd.DataFrame, samples: Samples
) -> list[tuple[str, int, object]]:
    """Per arm, its lowest-seed run that did not diverge and has samples: (arm, index, seed)."""
    picks = []
    for arm in summary["arm"]:
        rows = kept[kept["arm"] == arm].sort_values(["seed", "run_id"], na_position="last")
        for run_id, seed in zip(rows["run_id"], rows["seed"], strict=True):
            index = samples.index(run_id)
            if index is not None:
                picks.append((arm, index, seed))
                break
    return picks


def _panel_grid(n: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    ncols = min(n, 3 if n <= 9 else 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _panel_title(arm: str, seed: object) -> str:
    return f"{arm} (seed {_fmt_int(seed)})"


def _scatter_samples(ax: Axes, samples: Samples, index: int, size: float) -> None:
    """Real then generated on top, at most MAX_SCATTER points each, so neither hides all."""
    if samples.real is not None:
        real = samples.real[index, :MAX_SCATTER]
        ax.scatter(real[:, 0], real[:, 1], s=size, color=REAL_COLOUR, alpha=0.6, lw=0, label="real")
    fake = samples.samples[index, :MAX_SCATTER]
    ax.scatter(
        fake[:, 0], fake[:, 1], s=size, color=FAKE_COLOUR, alpha=0.8, lw=0, label="generated"
    )


def _plot_surfaces(samples: Samples, picks: list[tuple[str, int, object]]) -> Figure:
    """WGAN-GP Figure 1a: each arm's critic value surface with the samples over it."""
    fig, axes = _panel_grid(len(picks), 3.6, 3.1)
    axis = samples.axis
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    for ax, (arm, index, seed) in zip(axes, picks, strict=False):
        values = samples.values[index]
        finite = values[np.isfinite(values)]
        if finite.size:
            image = ax.imshow(
                values,
                origin="lower",
                extent=extent,
                cmap="Blues",
                interpolation="bilinear",
                aspect="equal",
            )
            if np.ptp(finite) > 0:
                ax.contour(
                    axis,
                    axis,
                    values,
                    levels=8,
                    colors="white",
                    linestyles="solid",
                    linewidths=0.6,
                    alpha=0.7,
                )
            bar = fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02)
            bar.ax.tick_params(labelsize="x-small")
            bar.formatter.set_powerlimits((-2, 3))
            bar.ax.yaxis.get_offset_text().set_fontsize("x-small")
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        _scatter_samples(ax, samples, index, size=2)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_title(_panel_title(arm, seed), fontsize="medium")
        ax.tick_params(labelsize="x-small")
    _shared_legend(fig, axes[0])
    fig.suptitle("critic value f(x) (colour, per-panel scale)")
    return fig


def _plot_samples(samples: Samples, picks: list[tuple[str, int, object]]) -> Figure:
    """Generated against real samples per arm, axes fitted to both so nothing is cut off."""
    fig, axes = _panel_grid(len(picks), 3.1, 3.1)
    for ax, (arm, index, seed) in zip(axes, picks, strict=False):
        _scatter_samples(ax, samples, index, size=3)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(_panel_title(arm, seed), fontsize="medium")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes[0])
    fig.suptitle("final samples")
    return fig


def _shared_legend(fig: Figure, ax: Axes) -> None:
    """One legend for the figure: every panel uses the same two colours."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=len(handles),
            markerscale=4,
            frameon=False,
        )


# ---------------------------------------------------------------- writing


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WganError(f"cannot create {path}: {err.strerror or err}") from None


def _write_text(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise WganError(f"cannot write {path}: {err.strerror or err}") from None
    return path
