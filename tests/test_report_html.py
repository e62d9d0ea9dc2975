"""report.html: one self-contained page whose images decode and whose tables equal summary.csv.

The page is read back with the standard library's html.parser, not with the code that wrote
it: every <img> must be a base64 PNG that matplotlib can decode, nothing may point outside the
file, and every number in the summary tables must be summary.csv's, rounded (means to three
significant figures, stds to two).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

# tests/ is on sys.path under pytest's default import mode: reuse the hand-written results.
from test_report import ARMS_IN_ORDER, build_toy_report, write_results

from wgan_cli.report import build_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COUNT_COLUMNS = {"n": "n", "diverged": "n_diverged", "unfinished": "n_unfinished"}


@dataclass
class Table:
    attrs: dict[str, str]
    head: list[list[str]] = field(default_factory=list)
    body: list[list[str]] = field(default_factory=list)


class PageParser(HTMLParser):
    """Collect what the tests check: tags used, every URL-like attribute, images, tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: list[str] = []
        self.tables: list[Table] = []
        self.style = ""
        self._in_style = False
        self._section: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        named = {k: v or "" for k, v in attrs}
        for attr in ("src", "href", "action", "data", "poster", "srcset"):
            if attr in named:
                self.urls.append((tag, attr, named[attr]))
        if tag == "img":
            self.images.append(named.get("src", ""))
        elif tag == "style":
            self._in_style = True
        elif tag == "table":
            self.tables.append(Table(attrs=named))
        elif tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            table = self.tables[-1]
            (table.head if self._section == "thead" else table.body).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        if self._cell is not None:
            self._cell.append(data)


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return parser


def summary_tables(page: PageParser) -> list[Table]:
    return [t for t in page.tables if "summary" in t.attrs.get("class", "").split()]


def decode_image(src: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    data = base64.b64decode(src[len(prefix) :], validate=True)
    assert data.startswith(PNG_SIGNATURE)
    return mpimg.imread(io.BytesIO(data), format="png")


def _rounding_slack(value: float, digits: int) -> float:
    """Half a unit in the last shown significant digit (plus float noise)."""
    if value == 0:
        return 0.0
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1) * (1 + 1e-9)


def _check_number(shown: str, exact: float, digits: int, where: str) -> None:
    """`shown` is `exact` rounded to `digits` significant figures, as written with %g."""
    assert shown == f"{exact:.{digits}g}", (where, shown, exact)
    assert abs(float(shown) - exact) <= _rounding_slack(exact, digits), (where, shown, exact)


def check_tables_match_csv(page: PageParser, csv: pd.DataFrame) -> int:
    """Every summary table's cell against summary.csv; returns how many numbers were compared."""
    tables = summary_tables(page)
    assert tables, "no summary table in the page"
    by_arm = {arm: row for arm, row in zip(csv["arm"], csv.to_dict("records"), strict=True)}
    stat_columns = {col[: -len("_mean")] for col in csv.columns if col.endswith("_mean")}
    seen_metrics: set[str] = set()
    compared = 0
    for table in tables:
        header = table.head[0]
        assert header[:2] == ["arm", "n"]
        assert [row[0] for row in table.body] == list(csv["arm"])  # same arms, same order
        for cells in table.body:
            expected = by_arm[cells[0]]
            for name, text in zip(header[1:], cells[1:], strict=True):
                where = f"{cells[0]} / {name}"
                if name in COUNT_COLUMNS:
                    assert int(text) == expected[COUNT_COLUMNS[name]], where
                    compared += 1
                    continue
                assert name in stat_columns, where
                seen_metrics.add(name)
                mean, std = expected[f"{name}_mean"], expected[f"{name}_std"]
                if text == "-":
                    assert math.isnan(mean), where
                    continue
                shown_mean, _, shown_std = text.partition(" ± ")
                _check_number(shown_mean, mean, 3, where)
                compared += 1
                if shown_std:
                    _check_number(shown_std, std, 2, where + " (std)")
                    compared += 1
                else:
                    assert math.isnan(std), where  # a std that exists is always shown
    # No metric of summary.csv with a value is missing from the page.
    with_values = {m for m in stat_columns if csv[f"{m}_mean"].notna().any()}
    assert with_values <= seen_metrics, with_values - seen_metrics
    return compared


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, PageParser]:
    """The toy sweep's report (every format; shared with test_report.py), read back."""
    folder, _, _ = build_toy_report(tmp_path_factory)
    text = (folder / "report.html").read_text(encoding="utf-8")
    return folder, text, parse_page(text)


def test_page_is_self_contained(page) -> None:
    _, text, parsed = page
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert {"script", "link", "iframe", "object", "embed"}.isdisjoint(parsed.tags)
    for tag, attr, value in parsed.urls:
        if attr == "href":
            assert value.startswith("#"), (tag, value)  # in-page anchors only
        else:
            assert value.startswith("data:"), (tag, attr, value[:60])
    assert "url(" not in parsed.style and "@import" not in parsed.style
    assert "http://" not in text and "https://" not in text


def test_every_image_decodes(page) -> None:
    _, _, parsed = page
    # w_vs_step, clip_frac, weight_hist, layer_grad_norms, surfaces, samples
    assert len(parsed.images) == 6
    for src in parsed.images:
        image = decode_image(src)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert float(np.std(image[..., :3])) > 0.01  # not blank


def test_each_plot_has_a_caption(page) -> None:
    _, text, _ = page
    for stem in ("w_vs_step", "clip_frac", "weight_hist", "layer_grad_norms", "surfaces"):
        start = text.index(f'<figure id="plot-{stem}">')
        figure = text[start : text.index("</figure>", start)]
        assert "<figcaption>" in figure and "<img " in figure, stem
    assert "running median" in text  # the W plot's caption explains the thick lines


def test_table_numbers_equal_summary_csv(page) -> None:
    folder, _, parsed = page
    csv = pd.read_csv(folder / "summary.csv")
    assert list(csv["arm"]) == ARMS_IN_ORDER
    tables = summary_tables(parsed)
    assert len(tables) == 2  # the main table and the diagnostics table
    # 6 arms x (3 counts + 8 metrics x mean/std, fewer where a value or std is missing)
    assert check_tables_match_csv(parsed, csv) > 100


def test_every_column_says_which_way_is_better(page) -> None:
    _, text, parsed = page
    main = summary_tables(parsed)[0]
    header, better = main.head
    direction = dict(zip(header, better, strict=True))
    assert direction["w1_true"] == "↓ lower"
    assert direction["clip_frac"] == "↓ lower"
    assert direction["w_estimate"] == "–"  # arbitrary scale: no direction
    diagnostics = summary_tables(parsed)[1]
    assert dict(zip(*diagnostics.head, strict=True))["modes_covered"] == "↑ higher"
    assert "gen_loss" not in " ".join(" ".join(r) for t in parsed.tables for r in t.head)
    assert "lower is better" in text and "no better direction" in text


def test_counts_and_runs_left_out_are_shown(page) -> None:
    _, text, parsed = page
    assert "12 runs</span>" in text and "6 arms</span>" in text
    assert "1 diverged</span>" in text and "1 unfinished</span>" in text
    assert "clip-0.1-s1" in text and "diverged at step 50" in text
    assert "clip-0.01-s2" in text and "running" in text
    (runs,) = [t for t in parsed.tables if t.attrs.get("class") == "runs"]
    assert len(runs.body) == 12


def test_several_folders_html_alone(tmp_path: Path) -> None:
    for name in ("a", "b"):  # the same run ids in both: they must stay apart
        write_results(tmp_path / name, histograms=False, layers=False, spectra=False, samples=False)
    out = tmp_path / "both"
    folders = [tmp_path / "a", tmp_path / "b"]
    build_report(folders, out, formats=["csv"])
    report = build_report(folders, out, formats=["html"])
    assert report.files == [out / "report.html"]
    assert not (out / "plots").exists()  # the page carries its own copies of the plots
    assert not (out / "report.md").exists()
    parsed = parse_page((out / "report.html").read_text(encoding="utf-8"))
    csv = pd.read_csv(out / "summary.csv")
    expected = [f"{f}: {arm}" for f in ("a", "b") for arm in ARMS_IN_ORDER]
    assert list(csv["arm"]) == expected
    check_tables_match_csv(parsed, csv)
    assert len(parsed.images) == 2  # w_vs_step, clip_frac
    for src in parsed.images:
        decode_image(src)
