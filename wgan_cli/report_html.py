"""report.html: the whole report as one self-contained page.

Everything the page needs is inside the file: the plots as base64 `data:` URIs, the style as
one inline <style> block, no script, no font or stylesheet from anywhere else. It opens from
a mail attachment or a laptop without network, in any browser, and shows the same numbers as
summary.csv, rounded by the same rule as report.md and the terminal table (`format_mean_std`).
Each table cell's `title` holds the unrounded value, shown when the pointer rests on it.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Sequence
from html import escape

import pandas as pd

from wgan_cli import __version__
from wgan_cli.report import (
    BETTER,
    DIAGNOSTICS_NOTE,
    METRIC_MEANINGS,
    PLOTS_NOTE,
    SUMMARY_NOTE,
    Plot,
    Source,
    better_text,
    format_mean_std,
    left_out_runs,
    run_counts,
    source_facts,
    table_metrics,
)

# Per-run columns in the collapsible table of all runs, where present.
RUN_TABLE_METRICS = ("w1_true", "w_estimate", "lipschitz_ratio", "clip_frac", "grad_norm_fake")
# Compact arrows for the "better" row under each table's header.
BETTER_MARK = {"lower": "↓ lower", "higher": "↑ higher", "closer to 1": "→ 1", "closer to 0": "→ 0"}

CSS = """
:root { --fg: #1d232b; --muted: #5b6573; --line: #d9dee5; --band: #f5f7fa;
        --accent: #2a5d9f; --bad: #b42318; --warn: #a15c07; --ok: #1f7a3a; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 60px; }
h1 { font-size: 1.7em; margin: 0 0 6px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05em; margin: 26px 0 6px; }
p, li, dd { max-width: 78ch; }
code { font: 0.92em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: var(--band); padding: 1px 4px; border-radius: 3px; }
nav { margin: 10px 0 0; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.counts { font-size: 1.05em; margin: 8px 0; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px; font-weight: 600;
        background: var(--band); border: 1px solid var(--line); }
.pill.ok { color: var(--ok); } .pill.bad { color: var(--bad); }
.pill.warn { color: var(--warn); }
.note { color: var(--muted); font-size: 0.93em; }
.scroll { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: var(--band); font-weight: 600; }
thead tr.better th { font-weight: 400; color: var(--muted); font-size: 0.9em; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef3fa; }
td.num { font-variant-numeric: tabular-nums; }
td .sd { color: var(--muted); }
td.bad { color: var(--bad); font-weight: 600; } td.warn { color: var(--warn); font-weight: 600; }
table.facts th { text-align: left; background: none; color: var(--muted);
                 font-weight: 400; }
table.facts td { text-align: left; white-space: normal; }
dl.metrics dt { font-weight: 600; margin-top: 10px; }
dl.metrics dd { margin: 2px 0 0 18px; }
.dir { font-weight: 400; color: var(--accent); margin-left: 6px; }
figure { margin: 18px 0 30px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.93em; max-width: 90ch; margin-top: 6px; }
figcaption strong { color: var(--fg); }
details { margin: 12px 0; } summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 48px; color: var(--muted); font-size: 0.85em; }
"""


def render_html(
    title: str,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    plots: Sequence[Plot],
    sources: Sequence[Source] = (),
) -> str:
    """The page: title, run counts, where the runs came from, the summary tables with which
    way each metric is better, what the metrics mean, each plot with its caption, and the
    runs that were not averaged (plus every run, folded away)."""
    main_metrics, diagnostics = table_metrics(summary)
    shown = [m for m in METRIC_MEANINGS if m in {*main_metrics, *diagnostics}]
    sections = [
        f"<h1>WGAN report: {escape(title)}</h1>",
        _counts(runs, summary),
        _nav(bool(plots)),
        *_sources(sources),
        '<h2 id="summary">Summary</h2>',
        f'<p class="note">{escape(SUMMARY_NOTE)}</p>',
        _summary_table(summary, main_metrics, counts=True, name="main"),
    ]
    if diagnostics:
        sections += [
            "<h3>Diagnostics</h3>",
            f'<p class="note">{escape(DIAGNOSTICS_NOTE)}</p>',
            _summary_table(summary, diagnostics, counts=False, name="diagnostics"),
        ]
    sections += ['<h2 id="metrics">What the metrics mean</h2>', _meanings(shown)]
    if plots:
        sections += ['<h2 id="plots">Plots</h2>', f'<p class="note">{escape(PLOTS_NOTE)}</p>']
        sections += [_figure(plot) for plot in plots]
    sections += ['<h2 id="runs">Runs</h2>', *_left_out(runs), _all_runs(runs)]
    sections.append(
        f"<footer>Written by <code>wgan report</code> (wgan {escape(__version__)}) from "
        "the results folder's CSV and npz files; summary.csv holds the unrounded numbers."
        "</footer>"
    )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>WGAN report: {escape(title)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def markdown_inline(text: str) -> str:
    """Escape text, then turn the `**bold**` and `code` spans the metric notes use into HTML."""
    html = escape(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html)


def _counts(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    n = run_counts(runs)
    diverged = "bad" if n["diverged"] else ""
    unfinished = "warn" if n["unfinished"] else ""
    return (
        '<p class="counts">'
        f'<span class="pill">{n["runs"]} runs</span> in '
        f'<span class="pill">{len(summary)} arms</span>: '
        f'<span class="pill ok">{n["done"]} done</span> '
        f'<span class="pill {diverged}">{n["diverged"]} diverged</span> '
        f'<span class="pill {unfinished}">{n["unfinished"]} unfinished</span>'
        "</p>"
    )


def _nav(has_plots: bool) -> str:
    links = [("summary", "Summary"), ("metrics", "Metrics")]
    links += [("plots", "Plots")] if has_plots else []
    links += [("runs", "Runs")]
    return "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in links) + "</nav>"


def _sources(sources: Sequence[Source]) -> list[str]:
    if not sources:
        return []
    heading = "Results folders" if len(sources) > 1 else "Results folder"
    parts = [f'<h2 id="sources">{heading}</h2>']
    for source in sources:
        if source.label:
            parts.append(f"<h3>{escape(source.label)}</h3>")
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
            for k, v in source_facts(source)
        )
        parts.append(f'<table class="facts">{rows}</table>')
    return parts


def _number(value: object, spec: str) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "-" if pd.isna(number) else f"{float(number):{spec}}"


def _stat_cell(mean: float, std: float) -> str:
    """`mean ± std` by format_mean_std's rule; the std greyed, full values on hover."""
    mean, std = float(mean), float(std)
    text = format_mean_std(mean, std)
    if math.isnan(mean):
        full = "no done run has a value"
    else:
        full = f"mean {mean!r}" + ("" if math.isnan(std) else f", std {std!r}")
    if " ± " in text:
        shown_mean, shown_std = text.split(" ± ")
        inner = f'{escape(shown_mean)}<span class="sd"> ± {escape(shown_std)}</span>'
    else:
        inner = escape(text)
    return f'<td class="num" title="{escape(full)}">{inner}</td>'


def _count_cell(value: object, warn_class: str) -> str:
    count = int(value)
    css = f"num {warn_class}" if count else "num"
    return f'<td class="{css}">{count}</td>'


def _summary_table(
    summary: pd.DataFrame, metrics: Sequence[str], *, counts: bool, name: str
) -> str:
    """One row per arm. The first header row names the summary.csv columns each cell comes
    from (metric names, mean ± std); the second says which way each metric is better."""
    head = ["arm", "n", *(["diverged", "unfinished"] if counts else []), *metrics]
    better = ["better", "", *(["", ""] if counts else []), *(_mark(m) for m in metrics)]
    rows = []
    for _, row in summary.iterrows():
        cells = [f"<td>{escape(str(row['arm']))}</td>", f'<td class="num">{int(row["n"])}</td>']
        if counts:
            cells += [
                _count_cell(row["n_diverged"], "bad"),
                _count_cell(row["n_unfinished"], "warn"),
            ]
        cells += [_stat_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="summary" data-table="{name}">'
        "<thead><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + '</tr><tr class="better">'
        + "".join(f"<th>{escape(b)}</th>" for b in better)
        + "</tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table></div>"
    )


def _mark(metric: str) -> str:
    direction = BETTER.get(metric)
    return BETTER_MARK.get(direction, direction) if direction else "–"


def _meanings(metrics: Iterable[str]) -> str:
    items = []
    for metric in metrics:
        items.append(
            f'<dt>{escape(metric)}<span class="dir">{escape(better_text(metric))}'
            f"</span></dt><dd>{markdown_inline(METRIC_MEANINGS[metric])}</dd>"
        )
    legend = (
        '<p class="note">Never ranked: the generator loss (its offset is arbitrary) and the '
        "metrics marked “no better direction”. In the tables, ↓ means lower is better, ↑ "
        "higher, → 1 and → 0 closer to that value, – no direction.</p>"
    )
    return '<dl class="metrics">' + "".join(items) + "</dl>" + legend


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure id="plot-{escape(plot.stem)}">'
        f"<h3>{escape(plot.title)}</h3>"
        f'<img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
        f"<figcaption>{markdown_inline(plot.note)}</figcaption></figure>"
    )


def _left_out(runs: pd.DataFrame) -> list[str]:
    left_out = left_out_runs(runs)
    if left_out.empty:
        return ["<p>Every run finished without diverging.</p>"]
    items = "".join(
        f"<li><code>{escape(r.run_id)}</code> ({escape(r.arm)}, seed {escape(r.seed)}): "
        f"{escape(r.detail)}</li>"
        for r in left_out.itertuples()
    )
    return [
        "<h3>Not averaged: diverged or unfinished</h3>",
        '<p class="note">Counted in the tables above, never averaged in.</p>',
        f"<ul>{items}</ul>",
    ]


def _all_runs(runs: pd.DataFrame) -> str:
    """Every run's final values, folded away: for checking one run without opening CSVs."""
    metrics = [m for m in RUN_TABLE_METRICS if m in runs.columns]
    head = ["run_id", "arm", "seed", "status", "steps_done", *metrics]
    head = [h for h in head if h in runs.columns]
    order = runs.sort_values(["arm", "seed", "run_id"], kind="stable")
    rows = []
    for _, run in order.iterrows():
        cells = [f"<td><code>{escape(str(run['run_id']))}</code></td>"]
        for col in head[1:]:
            value = run[col]
            if col in ("seed", "steps_done"):
                cells.append(f'<td class="num">{_number(value, ".0f")}</td>')
            elif col in metrics:
                full, shown = _number(value, ""), _number(value, ".3g")
                cells.append(f'<td class="num" title="{escape(full)}">{shown}</td>')
            else:
                css = {"diverged": ' class="bad"'}.get(str(value), "")
                if col == "status" and str(value) not in ("done", "diverged"):
                    css = ' class="warn"'
                cells.append(f"<td{css}>{escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        '<div class="scroll"><table class="runs"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table></div>"
    )
    return f"<details><summary>All {len(runs)} runs, final values</summary>{table}</details>"
