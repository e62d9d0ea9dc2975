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

import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

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
    "class_coverage",
    "mean_confidence",
    "inception_score",
)
RUNS_OPTIONAL_METRICS = OPTIONAL_METRICS[2:]
LAYER_COLUMNS = ("run_id", "step", "layer", "act_grad_norm", "weight_grad_norm")
SPECTRA_COLUMNS = ("run_id", "layer", "effective_rank")
SAMPLE_KEYS = ("run_ids", "samples")
STEP_SAMPLE_KEYS = ("samples_at_steps", "steps")
# Scatter colours shared by samples.png and surfaces.png; arm colours stay for lines.
REAL_COLOUR = "black"
FAKE_COLOUR = "#ff7f0e"
MAX_SCATTER = 1000
GRID_GAP_COLOUR = "#4a90d9"
# Known constraints first, in the order a reader compares them; unknown ones after, by name.
CONSTRAINT_ORDER = ("clip", "gp", "sn", "none")
# "None" is not missing here: it is never a status, and constraint "none" must stay a string.
NA_VALUES = ["", "nan", "NaN", "NA", "N/A", "<NA>", "null"]

METRIC_MEANINGS = {
    "w1_true": "exact Wasserstein-1 distance between generated and held-out real samples "
    "(optimal transport): the generator is closer to the data when it is lower. This is the "
    "ground truth for comparing arms.",
    "w_estimate": "the critic's estimate of W1, mean f(real) - mean f(fake) on held-out "
    "samples. It equals W1 only for an optimal 1-Lipschitz critic; under clipping it is W1 "
    "times an unknown scale, so compare it with w1_true rather than reading it as a distance.",
    "lipschitz_ratio": "w_estimate / w1_true, the critic's effective Lipschitz scale K "
    "(the WGAN paper's K * W1). 1 means a tight 1-Lipschitz estimate; clipping typically "
    "gives K far below 1, which rescales the generator's gradients, so compare arms rather "
    "than demanding 1.",
    "clip_frac": "share of critic weights piled up within 1% of ±c: near 1 means the clip "
    "binds almost everywhere and the critic is close to a sign network. Empty for arms "
    "without clipping.",
    "weight_abs_max": "largest |weight| in the critic; under clipping it cannot exceed c.",
    "grad_norm_real": "mean ‖∇x f(x)‖ at real points. An optimal 1-Lipschitz critic has "
    "norm 1 there; a clipped critic scales it by K like w_estimate. Values near 0 mean the "
    "generator gets vanishing gradients.",
    "grad_norm_fake": "mean ‖∇x f(x)‖ at generated points, the gradient the generator "
    "actually trains on; read like grad_norm_real.",
    "critic_loss": "mean f(fake) - mean f(real) on training batches (the negative of "
    "w_estimate); shown for completeness, not a quality measure. Arms are never ranked by "
    "generator loss, whose offset and scale depend on the critic.",
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
    "centre (gaussian mixtures only); fewer than the data's modes means mode collapse.",
    "high_quality_frac": "share of generated samples within 3 std of some mode (gaussian "
    "mixtures only); low means samples are smeared between modes.",
    "class_coverage": "digits only: how many of the 10 digits a fixed classifier (logistic "
    "regression fitted on the training digits) recognises, with probability above 0.5, in at "
    "least one generated image; below 10 means some digits are never made (mode collapse).",
    "mean_confidence": "digits only: the classifier's mean top-class probability on generated "
    "images; near 1 for sharp, digit-like images, lower for blurs and noise.",
    "inception_score": "digits only: exp(mean KL(p(y|x) || p(y))) with the digits classifier "
    "in place of Inception; 1 for one class or noise, up to 10 for sharp, varied digits.",
}
# Which way each metric is better, said next to every table. None: a diagnostic with no
# better direction (w_estimate's scale is arbitrary under clipping, so it is never ranked).
BETTER: dict[str, str | None] = {
    "w1_true": "lower",
    "w_estimate": None,
    "lipschitz_ratio": "closer to 1",
    "clip_frac": "lower",
    "weight_abs_max": None,
    "grad_norm_real": "closer to 1",
    "grad_norm_fake": "closer to 1",
    "critic_loss": None,
    "act_grad_slope": "closer to 0",
    "effective_rank": None,
    "grad_norm_interp": "closer to 1",
    "modes_covered": "higher",
    "high_quality_frac": "higher",
    "class_coverage": "higher",
    "mean_confidence": "higher",
    "inception_score": "higher",
}
NO_DIRECTION = "no better direction: a diagnostic"
# One heading and one or two sentences per plot, keyed by file stem, in report.md.
PLOT_NOTES = {
    "w_vs_step": (
        "W estimate and true W1 against step",
        "The critic's estimate tracks the true W1 only up to its Lipschitz scale K, so compare "
        "shapes across arms on the left and distances on the right (lower is better). Thin "
        "lines are the raw logged values; thick lines a running median over 5 logged steps "
        "(fewer for runs under 10 logged steps), with a band from the lowest to the highest "
        "seed. When an axis spans several orders of "
        "magnitude it is logarithmic (symmetric about 0, and linear close to 0, when values "
        "change sign).",
    ),
    "clip_frac": (
        "Clipping pile-up",
        "Share of weights within 1% of ±c; a value climbing towards 1 means the clip binds "
        "almost everywhere and the critic is close to a sign network.",
    ),
    "weight_hist": (
        "Final weight histograms",
        "Under clipping the weights pile up against the dashed ±c lines (a bimodal histogram); "
        "unconstrained, gradient-penalty and spectrally normalised critics spread smoothly. "
        "Counts are on a log axis so the interior stays visible next to the pile-up.",
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
    "image_grid": (
        "Generated images",
        "The first generated images of each arm's first seed, beside held-out real ones: "
        "look for blur, repeated images (collapse) and classes that never appear.",
    ),
    "image_grid_steps": (
        "Generated images during training",
        "The first generated images of each arm's first seed at each step in "
        "train.hist_steps and at the end: whether, and how fast, digits form under each c.",
    ),
    "samples": (
        "Generated vs real samples",
        "Final generated samples (orange) against held-out real samples (black), first seed "
        "of each arm: look for missing modes (collapse) and samples smeared between modes.",
    ),
}


# What `--format` can ask for: summary.csv, report.md (with plots/*.png), report.html.
ALL_FORMATS = ("md", "html", "csv")
MEDIAN_WINDOW = 5  # logged steps in the running median drawn over the raw curves


@dataclass(frozen=True)
class Report:
    """What the CLI needs after building a report: data for callers, text to print, paths."""

    summary: pd.DataFrame
    table: str
    files: list[Path]
    out: Path | None = None


@dataclass(frozen=True)
class Source:
    """One results folder in a report: where it is, what to call it, what made it."""

    folder: Path
    label: str  # the folder's name in a report of several folders; "" when it is alone
    name: str
    manifest: dict


@dataclass(frozen=True)
class Plot:
    """A rendered figure: file stem, heading, caption and PNG bytes (for file and HTML)."""

    stem: str
    title: str
    note: str
    png: bytes


@dataclass(frozen=True)
class Samples:
    """Final generated samples per run and, for 2-D data, the critic's value surface."""

    run_ids: np.ndarray
    samples: np.ndarray  # (R, n, d)
    real: np.ndarray | None  # (R, m, d) held-out real samples
    axis: np.ndarray | None  # (G,) grid coordinates, the same for x and y
    values: np.ndarray | None  # (R, G, G): values[r, i, j] is at x=axis[j], y=axis[i]
    image_shape: tuple[int, ...] | None = None  # (H, W, C) when each sample is an image
    at_steps: np.ndarray | None = None  # (R, S, k, d) first generated images at `steps`
    steps: np.ndarray | None = None  # (S,) the generator steps of at_steps

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


def build_report(
    folders: Path | str | Sequence[Path | str],
    out: Path | None = None,
    *,
    formats: Iterable[str] = ALL_FORMATS,
) -> Report:
    """Read one or more results folders and write the report into `out`.

    `formats` picks the files: "csv" summary.csv, "md" report.md with plots/*.png, "html" a
    self-contained report.html. With one folder `out` defaults to the folder itself, so a
    results folder is self-describing; several folders are compared in one report and need
    an explicit `out` (there is no one folder it would belong to). Arms and run ids of
    several folders are prefixed with the folder's name, so equal settings stay distinct.
    """
    folders = [Path(folders)] if isinstance(folders, str | Path) else [Path(f) for f in folders]
    formats = parse_formats(list(formats))
    if not folders:
        raise WganError("no results folder given")
    for folder in folders:
        if not folder.is_dir():
            raise WganError(f"results folder {folder} does not exist")
    if len(folders) > 1 and out is None:
        raise WganError(
            f"{len(folders)} results folders are compared in one report: say where it goes "
            "with --out DIR"
        )
    _check_distinct(folders)
    out = folders[0] if out is None else Path(out)
    labels = folder_labels(folders) if len(folders) > 1 else [""]
    data = [read_folder(folder, label) for folder, label in zip(folders, labels, strict=True)]
    sources = [d.source for d in data]
    runs = pd.concat([d.runs for d in data], ignore_index=True)
    summary = summarise(runs)
    _mkdir(out)
    files = []
    if "csv" in formats:
        files.append(_write_text(out / "summary.csv", summary.to_csv(index=False)))
    plots = make_plots(data, runs, summary) if {"md", "html"} & set(formats) else []
    title = report_title(sources)
    if "md" in formats:
        text = render_markdown(title, runs, summary, plots, sources=sources)
        files.append(_write_text(out / "report.md", text))
    if "html" in formats:
        from wgan_cli.report_html import render_html

        page = render_html(title, runs, summary, plots, sources)
        files.append(_write_text(out / "report.html", page))
    if "md" in formats:  # report.md links the PNG files; report.html carries its own copies
        files += _write_pngs(out / "plots", plots)
    return Report(summary=summary, table=render_table(summary), files=files, out=out)


def parse_formats(values: Iterable[str] | None) -> tuple[str, ...]:
    """`--format md --format html` or `--format md,html`; nothing means all of them."""
    chosen = [v.strip().lower() for value in (values or ()) for v in str(value).split(",")]
    chosen = [v for v in chosen if v]
    unknown = [v for v in chosen if v not in ALL_FORMATS]
    if unknown:
        raise WganError(
            f"unknown report format {unknown[0]!r}: choose from {', '.join(ALL_FORMATS)}"
        )
    return tuple(f for f in ALL_FORMATS if f in chosen) if chosen else ALL_FORMATS


def _check_distinct(folders: Sequence[Path]) -> None:
    seen: dict[Path, Path] = {}
    for folder in folders:
        key = folder.resolve()
        if key in seen:
            raise WganError(f"results folder {folder} is given twice (as {seen[key]})")
        seen[key] = folder


def folder_labels(folders: Sequence[Path]) -> list[str]:
    """Each folder's name, with as many parent folders as it takes to tell them apart."""
    parts = [folder.resolve().parts for folder in folders]
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(folder) for folder in folders]  # unreachable for distinct resolved paths


def report_title(sources: Sequence[Source]) -> str:
    if len(sources) == 1:
        return sources[0].name
    return " vs ".join(s.label for s in sources)


@dataclass(frozen=True)
class FolderData:
    """Everything read from one results folder; run ids and arms already made unique."""

    source: Source
    runs: pd.DataFrame
    metrics: pd.DataFrame
    hist: Histograms | None
    layers: pd.DataFrame | None
    samples: Samples | None


def read_folder(folder: Path, label: str = "") -> FolderData:
    """Read a results folder. With a label (a report of several folders) every run id
    becomes `label/run_id` and every arm `label: arm`, in every table and array, so runs and
    arms of different folders never merge, even when they share settings or run ids."""
    runs = assign_arms(read_runs(folder / "runs.csv"))
    metrics = read_metrics(folder / "metrics.csv")
    hist = read_histograms(folder / "histograms.npz")
    layers = read_layers(folder / "layers.csv")
    spectra = read_spectra(folder / "spectra.csv")
    samples = read_samples(folder / "samples.npz")
    runs = add_run_diagnostics(runs, layers, spectra)
    manifest = _manifest(folder)
    name = str(manifest.get("name") or folder.resolve().name)
    if label:
        prefix = f"{label}/"
        runs["run_id"] = prefix + runs["run_id"]
        runs["arm"] = f"{label}: " + runs["arm"]
        runs.insert(0, "folder", label)
        metrics = metrics.assign(run_id=prefix + metrics["run_id"])
        if layers is not None:
            layers = layers.assign(run_id=prefix + layers["run_id"])
        if hist is not None:
            hist = replace(hist, run_ids=np.array([prefix + r for r in hist.run_ids]))
        if samples is not None:
            samples = replace(samples, run_ids=np.array([prefix + r for r in samples.run_ids]))
    source = Source(folder=folder, label=label, name=name, manifest=manifest)
    return FolderData(source, runs, metrics, hist, layers, samples)


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
            keys = (*SAMPLE_KEYS, "real", "axis", "values", "image_shape", *STEP_SAMPLE_KEYS)
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
    shape = arrays.get("image_shape")
    image_shape = tuple(int(v) for v in shape) if shape is not None else None
    if image_shape is not None and int(np.prod(image_shape)) != samples.shape[2]:
        raise WganError(f"{path}: image_shape {image_shape} does not fit {samples.shape[2]} values")
    at_steps, steps = _check_step_samples(path, arrays, samples.shape)
    return Samples(
        run_ids=np.asarray(arrays["run_ids"]).astype(str),
        samples=samples,
        real=real,
        axis=axis,
        values=values,
        image_shape=image_shape,
        at_steps=at_steps,
        steps=steps,
    )


def _check_step_samples(
    path: Path, arrays: dict[str, np.ndarray], shape: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """samples_at_steps (R, S, k, d) with steps (S,): both or neither, shapes agreeing."""
    at, steps = arrays.get("samples_at_steps"), arrays.get("steps")
    if at is None and steps is None:
        return None, None
    at = np.asarray(at, dtype=float) if at is not None else None
    steps = np.asarray(steps) if steps is not None else None
    ok = at is not None and steps is not None and at.ndim == 4 and steps.ndim == 1
    ok = ok and at.shape[0] == shape[0] and at.shape[1] == steps.size and at.shape[3] == shape[2]
    if not ok:
        raise WganError(
            f"{path}: samples_at_steps {np.shape(at)} does not fit steps {np.shape(steps)} "
            f"and samples {shape}"
        )
    return at, steps.astype(int)


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


def _manifest(folder: Path) -> dict:
    """manifest.json if it is readable; the report must not fail over metadata."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


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
    """One row per arm; only done runs are averaged so a blow-up cannot skew a mean.

    Arms are ordered by their settings (constraint, then c or λ), never by a result. With a
    `folder` column (a report of several folders) they come folder by folder, in the order
    the folders were given, and the summary starts with that column.
    """
    metrics = summary_metrics(runs)
    rows = [_summarise_arm(arm, group, metrics) for arm, group in runs.groupby("arm", sort=False)]
    summary = pd.DataFrame(rows)
    keys = ["_rank", "constraint", "c", "gp_lambda", "arm"]
    summary["_rank"] = summary["constraint"].map(_constraint_rank)
    if "folder" in summary.columns:
        order = {label: i for i, label in enumerate(dict.fromkeys(runs["folder"]))}
        summary["_folder"] = summary["folder"].map(order)
        keys.insert(0, "_folder")
    summary = summary.sort_values(keys, na_position="last", kind="stable")
    return summary.drop(columns=[k for k in keys if k.startswith("_")]).reset_index(drop=True)


def _summarise_arm(arm: str, group: pd.DataFrame, metrics: Sequence[str]) -> dict[str, object]:
    done = group[group["status"] == "done"]
    n_diverged = int((group["status"] == "diverged").sum())
    row: dict[str, object] = {"folder": group["folder"].iloc[0]} if "folder" in group else {}
    row |= {
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

# One rounding rule for every table (terminal, report.md, report.html): three significant
# figures for a mean and two for its std are enough to compare arms and keep tables narrow.
MEAN_FORMAT = ".3g"
STD_FORMAT = ".2g"


def format_mean_std(mean: float, std: float) -> str:
    """`mean ± std` by the one rounding rule; a lone run has no std, no run shows `-`."""
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:{MEAN_FORMAT}}"
    return f"{mean:{MEAN_FORMAT}} ± {std:{STD_FORMAT}}"


def better_text(metric: str) -> str:
    """Which way a metric is better, as a phrase ("lower is better", or NO_DIRECTION);
    every table says it for every column."""
    direction = BETTER.get(metric)
    return f"{direction} is better" if direction else NO_DIRECTION


def run_counts(runs: pd.DataFrame) -> dict[str, int]:
    """Runs by outcome: done runs are averaged; diverged and unfinished ones only counted."""
    status = runs["status"].value_counts()
    done, diverged = int(status.get("done", 0)), int(status.get("diverged", 0))
    return {
        "runs": len(runs),
        "done": done,
        "diverged": diverged,
        "unfinished": len(runs) - done - diverged,
    }


def counts_sentence(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    n = run_counts(runs)
    return (
        f"{n['runs']} runs in {len(summary)} arms: {n['done']} done, {n['diverged']} diverged, "
        f"{n['unfinished']} unfinished."
    )


def table_metrics(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The main table's metrics and the diagnostics table's (those with a value somewhere)."""
    return list(SUMMARY_METRICS), _optional_stats(summary)


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
    directed = [f"{short} {BETTER[m]}" for m, short in columns.items() if BETTER.get(m)]
    undirected = [short for m, short in columns.items() if not BETTER.get(m)]
    lines.append(f"better: {', '.join(directed)}.")
    if undirected:
        lines.append(
            f"{' and '.join(undirected)}: diagnostics, no better direction (w_estimate's scale "
            "is arbitrary under clipping). Arms are never ranked by the generator loss."
        )
    return "\n".join(line.rstrip() for line in lines)


def _table_line(cells: list[str], widths: list[int]) -> str:
    """Arm names read best left-aligned, numbers right-aligned."""
    padded = [cells[0].ljust(widths[0])]
    padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join(padded)


def _better_line(metrics: Iterable[str]) -> str:
    metrics = list(metrics)
    directed = [f"{m} {BETTER[m]}" for m in metrics if BETTER.get(m)]
    undirected = [m for m in metrics if not BETTER.get(m)]
    line = f"Better: {'; '.join(directed)}." if directed else ""
    if undirected:
        line += f" No better direction (diagnostics): {', '.join(undirected)}."
    return line.strip()


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
        DIAGNOSTICS_NOTE,
        "\n".join("| " + " | ".join(row) + " |" for row in rows),
        _better_line(metrics),
    ]


SUMMARY_NOTE = (
    "Final values, mean ± sample std (n - 1) over the done runs' seeds; a single run shows "
    "no std. Diverged and unfinished runs are counted but never averaged in. Arms are listed "
    "by their settings, not ranked; the generator loss is never used to rank them (its "
    "offset is arbitrary)."
)
DIAGNOSTICS_NOTE = (
    "Final diagnostics from whichever of layers.csv, spectra.csv and the runs' mode and "
    "interpolate columns the sweep wrote; mean ± std over the same done runs."
)
PLOTS_NOTE = (
    "Curves and histograms use every run that did not diverge (unfinished runs included, "
    "so a live sweep can be watched); lines are the mean over seeds, bands span min to "
    "max. Per-layer gradient norms use done runs only. Each arm keeps one colour in every "
    "plot."
)


def render_markdown(
    name: str,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    plots: Sequence[Plot],
    *,
    sources: Sequence[Source] = (),
) -> str:
    """A report a reader can follow without the code: numbers, their meaning, then pictures."""
    shown = {*SUMMARY_METRICS, *_optional_stats(summary)}
    parts = [
        f"# WGAN report: {name}",
        counts_sentence(runs, summary),
        *_sources_section(sources),
        "## Summary",
        SUMMARY_NOTE,
        _markdown_table(summary),
        _better_line(SUMMARY_METRICS),
        *_diagnostics_section(summary),
        "## What the metrics mean",
        "\n".join(
            f"- **{m}** ({better_text(m)}): {text}"
            for m, text in METRIC_MEANINGS.items()
            if m in shown
        ),
        *(["## Plots", PLOTS_NOTE] if plots else []),
        *(_plot_section(p) for p in plots),
        *_left_out_section(runs),
    ]
    return "\n\n".join(parts) + "\n"


def _plot_section(plot: Plot) -> str:
    image = f"![{plot.stem}](plots/{plot.stem}.png)"
    return "\n\n".join(part for part in (f"### {plot.title}", plot.note, image) if part)


def source_facts(source: Source) -> list[tuple[str, str]]:
    """What the manifest says about how a folder was made, as (what, value) pairs."""
    manifest = source.manifest
    facts = [("folder", str(source.folder)), ("name", source.name)]
    for key in ("command", "started", "git_commit", "n_runs"):
        if manifest.get(key) not in (None, ""):
            facts.append((key.replace("_", " "), str(manifest[key])))
    try:
        wall = float(manifest.get("wall_s"))
    except (TypeError, ValueError):
        wall = math.nan
    if math.isfinite(wall):
        facts.append(("wall time", f"{wall:.0f} s"))
    return facts


def _sources_section(sources: Sequence[Source]) -> list[str]:
    if not sources:
        return []
    lines = []
    for source in sources:
        facts = "; ".join(f"{k} `{v}`" for k, v in source_facts(source))
        lines.append(f"- **{source.label}**: {facts}" if source.label else f"- {facts}")
    return ["## Results folders" if len(sources) > 1 else "## Results folder", "\n".join(lines)]


def left_out_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that are counted but not averaged, with what happened to each."""
    rows = runs[runs["status"] != "done"]
    details = []
    for _, run in rows.iterrows():
        if run["status"] == "diverged":
            details.append(f"diverged at step {_fmt_int(run.get('diverged_step'))}")
        else:
            status = run["status"] or "no status"
            details.append(f"{status}, {_fmt_int(run.get('steps_done'))} steps done")
    return pd.DataFrame(
        {
            "run_id": rows["run_id"],
            "arm": rows["arm"],
            "seed": [_fmt_int(seed) for seed in rows["seed"]],
            "status": rows["status"],
            "detail": details,
        }
    )


def _left_out_section(runs: pd.DataFrame) -> list[str]:
    """List diverged and unfinished runs so they can be inspected, not silently dropped."""
    left_out = left_out_runs(runs)
    if left_out.empty:
        return []
    lines = [f"- `{r.run_id}` ({r.arm}, seed {r.seed}): {r.detail}" for r in left_out.itertuples()]
    return ["## Runs not averaged (diverged or unfinished)", "\n".join(lines)]


def _fmt_int(value: object) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "?" if pd.isna(number) else str(int(number))


# ---------------------------------------------------------------- plots


def arm_colours(arms: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """Fix one colour per arm up front so the same arm looks the same in every plot.

    Up to 10 arms get tab10; more get tab20's strong shades first, then its light ones (in
    tab20's own order a light shade sits next to its strong twin, and two neighbouring arms
    would be hard to tell apart).
    """
    arms = list(arms)
    if len(arms) <= 10:
        cmap, order = colormaps["tab10"], list(range(10))
    else:
        cmap, order = colormaps["tab20"], [*range(0, 20, 2), *range(1, 20, 2)]
    return {arm: tuple(cmap(order[i % len(order)])) for i, arm in enumerate(arms)}


def make_plots(data: Sequence[FolderData], runs: pd.DataFrame, summary: pd.DataFrame) -> list[Plot]:
    """Render every plot whose input exists (a missing optional file skips its plot), in the
    order the report shows them, each arm in one colour throughout."""
    colours = arm_colours(summary["arm"])
    arms = list(summary["arm"])
    kept = runs[runs["status"] != "diverged"]
    metrics = pd.concat([d.metrics for d in data], ignore_index=True)
    curves = metrics.merge(kept[["run_id", "arm"]], on="run_id", how="inner")
    figures = [
        ("w_vs_step", _plot_w(curves, arms, colours)),
        ("clip_frac", _plot_clip_frac(curves, arms, colours)),
    ]
    hists = {d.source.label: d.hist for d in data if d.hist is not None}
    if hists:
        figures.append(("weight_hist", _plot_histograms(hists, kept, summary, colours)))
    layers = [d.layers for d in data if d.layers is not None]
    if layers:
        done = runs.loc[runs["status"] == "done", ["run_id", "arm"]]
        last = last_step_rows(pd.concat(layers, ignore_index=True))
        last = last.merge(done, on="run_id", how="inner")
        if not last.empty:
            figures.append(("layer_grad_norms", _plot_layer_grad_norms(last, arms, colours)))
    picks = _sample_picks(data, kept, summary, lambda s: s.samples.shape[2] == 2)
    if any(samples.values is not None for _, samples, _, _ in picks):
        surface_picks = [pick for pick in picks if pick[1].values is not None]
        figures.append(("surfaces", _plot_surfaces(surface_picks)))
    if picks:
        figures.append(("samples", _plot_samples(picks)))
    images = _sample_picks(data, kept, summary, lambda s: s.image_shape is not None)
    if images:
        figures.append(("image_grid", _plot_image_grids(images)))
        over_time = [
            pick for pick in images if pick[1].steps is not None and pick[1].steps.size > 1
        ]
        if over_time:
            figures.append(("image_grid_steps", _plot_image_steps(over_time)))
    return [_render(stem, fig) for stem, fig in figures]


def _render(stem: str, fig: Figure) -> Plot:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    title, note = PLOT_NOTES.get(stem, (stem, ""))
    return Plot(stem=stem, title=title, note=note, png=buffer.getvalue())


def _write_pngs(plot_dir: Path, plots: Sequence[Plot]) -> list[Path]:
    _mkdir(plot_dir)
    paths = []
    for plot in plots:
        path = plot_dir / f"{plot.stem}.png"
        try:
            path.write_bytes(plot.png)
        except OSError as err:
            raise WganError(f"cannot write {path}: {err.strerror or err}") from None
        paths.append(path)
    return paths


def _sample_picks(
    data: Sequence[FolderData],
    kept: pd.DataFrame,
    summary: pd.DataFrame,
    wanted: Callable[[Samples], bool],
) -> list[tuple[str, Samples, int, object]]:
    """Per arm whose samples are `wanted` (2-D points, images), its first seed's run: (arm,
    that folder's samples, index, seed), in table order. Folders' samples stay apart: their
    grids may differ."""
    picks = {}
    for d in data:
        samples = d.samples
        if samples is None or not wanted(samples):
            continue
        own = kept[kept["run_id"].isin(d.runs["run_id"])]
        for arm, index, seed in first_seed_runs(
            own, summary[summary["arm"].isin(own["arm"])], samples
        ):
            picks[arm] = (arm, samples, index, seed)
    return [picks[arm] for arm in summary["arm"] if arm in picks]


def _plot_image_grids(picks: list[tuple[str, Samples, int, object]], side: int = 6) -> Figure:
    """A side x side grid of each arm's first generated images, and the real ones first."""
    first = picks[0][1]
    panels = [("real (held out)", first.real[0] if first.real is not None else None)]
    panels += [(_panel_title(arm, seed), s.samples[i]) for arm, s, i, seed in picks]
    panels = [(title, x) for title, x in panels if x is not None]
    fig = Figure(figsize=(2.4 * len(panels), 2.7))
    for k, (title, x) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        _show_tile(ax, _tile(x[: side * side], first.image_shape, side))
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _plot_image_steps(picks: list[tuple[str, Samples, int, object]], side: int = 4) -> Figure:
    """One row per arm (its first seed), one column per saved step: how the images form."""
    n_cols = max(s.steps.size for _, s, _, _ in picks)
    fig = Figure(figsize=(1.6 * n_cols + 0.6, 1.7 * len(picks) + 0.3))
    for row, (arm, s, i, seed) in enumerate(picks):
        for col, step in enumerate(s.steps):
            ax = fig.add_subplot(len(picks), n_cols, row * n_cols + col + 1)
            tile = _tile(s.at_steps[i, col, : side * side], s.image_shape, side)
            _show_tile(ax, tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"step {step}", fontsize=8)
            if col == 0:
                ax.set_ylabel(_panel_title(arm, seed), fontsize=7)
    fig.tight_layout()
    return fig


def _tile(flat: np.ndarray, shape: tuple[int, ...], side: int) -> np.ndarray:
    """Images (n, H*W*C) in [-1, 1] laid out row by row, one NaN pixel between them (drawn
    in GRID_GAP_COLOUR, so neighbours stay apart); the first channel of colour data."""
    h, w = shape[0], shape[1]
    images = np.full((side * side, h + 1, w + 1), np.nan)
    images[:, :h, :w] = -1.0
    images[: len(flat), :h, :w] = flat.reshape(len(flat), *shape)[..., 0]
    rows = images.reshape(side, side, h + 1, w + 1).transpose(0, 2, 1, 3)
    return rows.reshape(side * (h + 1), side * (w + 1))[:-1, :-1]


def _show_tile(ax: Axes, tile: np.ndarray) -> None:
    cmap = colormaps["gray"].with_extremes(bad=GRID_GAP_COLOUR)
    ax.imshow(tile, cmap=cmap, vmin=-1, vmax=1)


def median_window(n_steps: int, window: int = MEDIAN_WINDOW) -> int:
    """The running median's window for a run with n_steps logged steps: `window`, but for a
    run shorter than two windows the largest odd number up to half its length (at least 1),
    so a short run's curve is not flattened into a single average."""
    if n_steps >= 2 * window:
        return window
    half = max(1, n_steps // 2)
    return half if half % 2 else half - 1


def rolling_median(curves: pd.DataFrame, metric: str, window: int = MEDIAN_WINDOW) -> pd.Series:
    """Per run, a centred running median of `metric` over `window` logged steps (fewer at
    the ends, and see median_window for short runs; missing values skipped), aligned with
    `curves`' index."""
    ordered = curves.sort_values(["run_id", "step"], kind="stable")
    smooth = ordered.groupby("run_id", sort=False)[metric].transform(
        lambda values: values.rolling(
            median_window(len(values), window), center=True, min_periods=1
        ).median()
    )
    return smooth.reindex(curves.index)


def _plot_curves(
    ax: Axes,
    curves: pd.DataFrame,
    metric: str,
    arms: Sequence[str],
    colours: dict[str, tuple[float, ...]],
    *,
    smooth: bool = False,
    rescale: bool = True,
) -> None:
    """Mean over seeds per step with a min-max band, so seed spread is visible at a glance.

    With `smooth` the raw mean is drawn thin and faint and the running median (per run,
    then averaged, the band over the medians) solid on top, so noise does not hide trends.
    """
    curves = curves.dropna(subset=[metric])
    if smooth and not curves.empty:
        curves = curves.assign(_smooth=rolling_median(curves, metric))
    column = "_smooth" if smooth else metric
    drawn = []
    for arm in arms:
        rows = curves[curves["arm"] == arm]
        if rows.empty:
            continue
        colour = colours[arm]
        if smooth:
            raw = rows.groupby("step")[metric].mean()
            ax.plot(raw.index, raw.to_numpy(), color=colour, lw=0.8, alpha=0.35)
            drawn.append(raw.to_numpy())
        stats = rows.groupby("step")[column].agg(["mean", "min", "max"])
        marker = "o" if len(stats) <= 5 else None  # a short run must not vanish next to long ones
        ax.plot(stats.index, stats["mean"], color=colour, label=arm, lw=1.8, marker=marker, ms=3)
        drawn.append(stats["mean"].to_numpy())
        if rows["run_id"].nunique() > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.2)
            drawn += [stats["min"].to_numpy(), stats["max"].to_numpy()]
    ax.set_xlabel("generator step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if rescale and drawn:
        scale_y(ax, np.concatenate(drawn))
    if not ax.has_data():
        ax.text(0.5, 0.5, f"no {metric} values", ha="center", va="center", transform=ax.transAxes)


MAX_DECADE_LABELS = 7  # labelled ticks on a log or symlog axis, so labels never collide


def scale_y(ax: Axes, values: np.ndarray) -> str:
    """Pick the y scale for values that may span orders of magnitude (clip arms' critic
    values differ by orders of magnitude across c; a linear axis would flatten all but the
    largest). Within a factor of 100: linear. All positive: log. Otherwise symlog, linear
    inside the decade holding the smallest 5% of magnitudes, with at most
    MAX_DECADE_LABELS labelled decades spread so that no two labels (0 included) collide.
    Returns the scale chosen."""
    finite = values[np.isfinite(values)]
    magnitude = np.abs(finite[finite != 0])
    if magnitude.size == 0:
        return "linear"
    low, high = float(np.quantile(magnitude, 0.05)), float(magnitude.max())
    if high / low <= 100:
        return "linear"
    if finite.min() > 0:
        ax.set_yscale("log")
        return "log"
    lo = math.floor(math.log10(low))
    ax.set_yscale("symlog", linthresh=10.0**lo, linscale=1.0)
    major, minor = symlog_ticks(finite, lo)
    ax.yaxis.set_major_locator(FixedLocator(major))
    ax.yaxis.set_minor_locator(FixedLocator(minor))
    ax.yaxis.set_major_formatter(FuncFormatter(_decade_label))
    return "symlog"


def symlog_ticks(values: np.ndarray, lo: int) -> tuple[list[float], list[float]]:
    """Major and minor ticks for a symlog axis whose linear part is [-10**lo, 10**lo].

    Positions are counted in decades: 10**k sits (k - lo) + 1.11 from 0 (matplotlib gives
    the linear part linscale / (1 - 1/10) decades). Labelled decades are multiples of a
    stride chosen so that at most MAX_DECADE_LABELS fit the span, and none is labelled
    closer than most of a stride to 0, whose label would otherwise overlap it (the bug of
    `10⁻⁸`, `0`, `−10⁻⁸` stacked on one spot).
    """
    linear = 1.0 / (1.0 - 0.1)
    sides = []
    for sign in (1.0, -1.0):
        side = values[sign * values > 10.0**lo] * sign
        if side.size:
            sides.append((sign, math.floor(math.log10(side.max()))))
    span = sum(hi - lo + linear for _, hi in sides)
    stride = max(1, math.ceil(span / MAX_DECADE_LABELS))
    major = [0.0] if values.min() <= 0 <= values.max() or len(sides) == 2 else []
    minor = []
    for sign, hi in sides:
        labelled = [
            k for k in range(lo, hi + 1) if k % stride == 0 and (k - lo) + linear >= 0.75 * stride
        ]
        major += [sign * 10.0**k for k in (labelled or [hi])]
        minor += [sign * 10.0**k for k in range(lo, hi + 2)]
    return sorted(major), sorted(minor)


def _decade_label(value: float, _pos: object = None) -> str:
    if value == 0:
        return "0"
    exponent = round(math.log10(abs(value)))
    sign = "-" if value < 0 else ""
    return f"$\\mathdefault{{{sign}10^{{{exponent}}}}}$"


def _plot_w(curves: pd.DataFrame, arms: Sequence[str], colours: dict) -> Figure:
    fig = Figure(figsize=(11.5, 4.4), layout="constrained")
    ax_est, ax_true = fig.subplots(1, 2, sharex=True)
    _plot_curves(ax_est, curves, "w_estimate", arms, colours, smooth=True)
    _plot_curves(ax_true, curves, "w1_true", arms, colours, smooth=True)
    ax_est.set_title("critic's W1 estimate (no better direction)")
    ax_true.set_title("true W1 (lower = closer to data)")
    _arm_legend(fig, (ax_est, ax_true), style_note=True)
    return fig


def _arm_legend(fig: Figure, axes: Sequence[Axes], *, style_note: bool = False) -> None:
    """One legend for all panels, outside them: inside, it would cover someone's line."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if not entries:
        return
    if style_note:
        entries["raw (thin)"] = Line2D([], [], color="grey", lw=0.8, alpha=0.5)
        entries["running median"] = Line2D([], [], color="grey", lw=1.8)
    fig.legend(entries.values(), entries.keys(), loc="outside right center", fontsize="small")


def _plot_clip_frac(curves: pd.DataFrame, arms: Sequence[str], colours: dict) -> Figure:
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    _plot_curves(ax, curves, "clip_frac", arms, colours, rescale=False)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("share of critic weights at ±c (lower = healthier)")
    _arm_legend(fig, [ax])
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
    hists: dict[str, Histograms], kept: pd.DataFrame, summary: pd.DataFrame, colours: dict
) -> Figure:
    """One panel per arm: under clipping the weights pile up against the dashed ±c lines.

    `hists` maps a folder's label ("" for a lone folder) to its histograms; an arm's runs
    are looked up in its own folder's file.
    """
    n = len(summary)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.7 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, (ax, (_, row)) in enumerate(zip(axes, summary.iterrows(), strict=False)):
        hist = hists.get(str(row["folder"]) if "folder" in row else "")
        run_ids = kept.loc[kept["arm"] == row["arm"], "run_id"]
        summed = arm_histograms(hist, run_ids) if hist is not None else None
        _plot_arm_histogram(ax, summed, row, colours[row["arm"]])
        if i % ncols == 0:
            ax.set_ylabel("count (log scale)")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("final critic weights (all layers and seeds); dashed: ±c")
    return fig


def _plot_arm_histogram(
    ax: Axes, summed: tuple[np.ndarray, np.ndarray] | None, row: pd.Series, colour: tuple
) -> None:
    """Counts on a log axis: the ±c pile-up bars would otherwise flatten the interior."""
    if summed is not None and np.any(summed[1] > 0):
        edges, counts = summed
        positive = counts[counts > 0]
        floor = min(0.5, float(positive.min()) / 2)  # empty bins sit on the floor, unseen
        ax.stairs(
            np.maximum(counts, floor), edges, baseline=floor, fill=True, color=colour, alpha=0.75
        )
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor, top=float(positive.max()) * 2)
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
    steps = last["step"].unique()
    when = f"the last logged step ({steps[0]:g})" if steps.size == 1 else "each run's last step"
    fig.suptitle(f"critic gradient norms at {when}, done runs")
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


def _plot_surfaces(picks: list[tuple[str, Samples, int, object]]) -> Figure:
    """WGAN-GP Figure 1a: each arm's critic value surface with the samples over it."""
    fig, axes = _panel_grid(len(picks), 3.6, 3.1)
    for ax, (arm, samples, index, seed) in zip(axes, picks, strict=False):
        axis = samples.axis
        extent = (axis[0], axis[-1], axis[0], axis[-1])
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
    _shared_legend(fig, axes)
    fig.suptitle("critic value f(x) (colour, per-panel scale)")
    return fig


def _plot_samples(picks: list[tuple[str, Samples, int, object]]) -> Figure:
    """Generated against real samples per arm, axes fitted to both so nothing is cut off."""
    fig, axes = _panel_grid(len(picks), 3.1, 3.1)
    for ax, (arm, samples, index, seed) in zip(axes, picks, strict=False):
        _scatter_samples(ax, samples, index, size=3)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(_panel_title(arm, seed), fontsize="medium")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    fig.suptitle("final samples")
    return fig


def _shared_legend(fig: Figure, axes: Iterable[Axes]) -> None:
    """One legend for the figure: every panel uses the same colours, but not every panel
    has real samples (older samples.npz files lack them), so gather entries from all."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(
            entries.values(),
            entries.keys(),
            loc="outside lower center",
            ncols=len(entries),
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
