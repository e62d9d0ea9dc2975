"""Turn a results folder written by `wgan sweep` into summary.csv, report.md and plots.

Everything here reads only the results folder, so a report can be rebuilt at any time (also
while a sweep is still running) without touching training code or a device.

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
}


@dataclass(frozen=True)
class Report:
    """What the CLI needs after building a report: data for callers, text to print, paths."""

    summary: pd.DataFrame
    table: str
    files: list[Path]


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
    summary = summarise(runs)
    colours = arm_colours(summary["arm"])
    plots = _write_plots(out / "plots", runs, metrics, hist, summary, colours)
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
    try:
        df = pd.read_csv(path, dtype={"run_id": str}, keep_default_na=False, na_values=NA_VALUES)
    except pd.errors.EmptyDataError:
        raise WganError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WganError(f"{path} cannot be read as CSV: {first_line}") from None
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise WganError(f"{path} lacks required column(s): {', '.join(missing)}")
    if df.empty:
        raise WganError(f"{path} has no rows")
    return df


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
    df = _to_numeric(df, ("c", "gp_lambda", "seed", *SUMMARY_METRICS))
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


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm; only done runs are averaged so a blow-up cannot skew a mean."""
    rows = [_summarise_arm(arm, group) for arm, group in runs.groupby("arm", sort=False)]
    summary = pd.DataFrame(rows)
    summary["_rank"] = summary["constraint"].map(_constraint_rank)
    summary = summary.sort_values(
        ["_rank", "constraint", "c", "gp_lambda", "arm"], na_position="last", kind="stable"
    )
    return summary.drop(columns="_rank").reset_index(drop=True)


def _summarise_arm(arm: str, group: pd.DataFrame) -> dict[str, object]:
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
    for metric in SUMMARY_METRICS:
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


def _cells(summary: pd.DataFrame, metrics: Iterable[str]) -> list[list[str]]:
    return [
        [
            str(row["arm"]),
            str(row["n"]),
            str(row["n_diverged"]),
            str(row["n_unfinished"]),
            *(format_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics),
        ]
        for _, row in summary.iterrows()
    ]


def render_table(summary: pd.DataFrame) -> str:
    """The plain-text table the CLI prints: aligned columns, a header, and how to read it."""
    header = ["arm", "n", "div", "unf", *TABLE_METRICS.values()]
    rows = [header, *_cells(summary, TABLE_METRICS)]
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


def render_markdown(
    name: str, runs: pd.DataFrame, summary: pd.DataFrame, plots: list[Path], out: Path
) -> str:
    """A report a reader can follow without the code: numbers, their meaning, then pictures."""
    counts = runs["status"].value_counts()
    n_done, n_div = int(counts.get("done", 0)), int(counts.get("diverged", 0))
    parts = [
        f"# WGAN report: {name}",
        f"{len(runs)} runs in {len(summary)} arms: {n_done} done, {n_div} diverged, "
        f"{len(runs) - n_done - n_div} unfinished.",
        "## Summary",
        "Final values, mean ± sample std (n - 1) over the done runs' seeds; a single run shows "
        "no std. Diverged and unfinished runs are counted but never averaged in.",
        _markdown_table(summary),
        "## What the metrics mean",
        "\n".join(f"- **{m}**: {text}" for m, text in METRIC_MEANINGS.items()),
        "## Plots",
        "Curves and histograms use every run that did not diverge (unfinished runs included, "
        "so a live sweep can be watched); lines are the mean over seeds, bands span min to "
        "max. Each arm keeps one colour in every plot.",
        *(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in plots),
        *_diverged_section(runs),
    ]
    return "\n\n".join(parts) + "\n"


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
) -> list[Path]:
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
