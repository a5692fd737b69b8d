"""The static HTML report, rendered in a real headless browser (Debian's chromium).

The browser loads report.html from disk; from its rendered DOM (--dump-dom) we check that
every section is there, that the report's own after-load check found no broken image, and
that every number shown from table `metrics` equals the catalog; a screenshot must be a
non-blank PNG. A copy with one corrupted image proves the broken-image check can fail."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import sample_files
from report_data import WHERE, build

from protiso import open_store
from protiso.report import SECTIONS, build_report, fmt

CHROMIUM = Path("/usr/bin/chromium")
needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(apt-get install -y chromium chromium-driver)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
METRIC_FIELDS = {"layer", "n", "d", "isoscore", "effective_dims", "avg_cosine"}


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def render(report: Path, tmp: Path) -> str:
    """The DOM of the report after the browser loaded it."""
    proc = chromium(tmp, "--virtual-time-budget=10000", "--dump-dom", report.resolve().as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<html" in proc.stdout
    return proc.stdout


class _Dom(HTMLParser):
    """Sections, images, the image check, metric cells and correlation cells of a DOM dump."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.check = [], [], None
        self.cells, self.corr = [], []
        self._open = None   # (kind, attrs, text parts) of the cell being read

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "img":
            self.images.append(a)
        if a.get("id") == "image-check":
            self.check = a
        if tag == "td" and "data-metric-id" in a:
            self._open = ("metric", a, [])
        elif tag == "td" and "data-corr" in a:
            self._open = ("corr", a, [])

    def handle_data(self, data):
        if self._open:
            self._open[2].append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._open:
            kind, a, text = self._open
            (self.cells if kind == "metric" else self.corr).append((a, "".join(text).strip()))
            self._open = None


def parse(dom: str) -> _Dom:
    p = _Dom()
    p.feed(dom)
    return p


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """(store root, report path) of the shared small analysed store."""
    root, _ = build(tmp_path_factory.mktemp("report") / "store", sample_files())
    with open_store(root, read_only=True) as s:
        path = build_report(s, root.parent / "out")
    return root, path


def _shown_equals(text: str, value) -> bool:
    """The cell text is the catalog value as the report formats it, and parses back to it."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return text == "n/a"
    if text != fmt(value):
        return False
    return float(text) == pytest.approx(float(value), rel=6e-6, abs=0)


@needs_browser
def test_report_renders_with_every_section_and_no_broken_image(reported, tmp_path):
    root, report = reported
    dom = parse(render(report, tmp_path))
    assert dom.sections == [sid for sid, _ in SECTIONS]
    assert dom.check is not None and dom.check.get("data-checked") == "yes", dom.check
    assert dom.check.get("data-broken") == ""
    assert int(dom.check["data-images"]) == len(dom.images) >= 12
    figures = {img.get("data-figure") for img in dom.images}
    for prefix in ("spectra", "layers", "checkpoints", "groups-", "local-", "corr-", "pairs-", "go-"):
        assert any(f.startswith(prefix) for f in figures), (prefix, figures)
    html = report.read_text()
    assert "http://" not in html and "https://" not in html     # nothing fetched from elsewhere
    # provenance under every figure: run, filter, n, seed
    provs = re.findall(r'<div class="prov">provenance: (.*?)</div>', html)
    assert len(provs) == len(dom.images)
    for p in provs:
        assert "run" in p and "filter [" in p and "n=" in p and "seed" in p, p


@needs_browser
def test_numbers_shown_equal_the_metrics_table(reported, tmp_path):
    root, report = reported
    dom = parse(render(report, tmp_path))
    assert len(dom.cells) > 100
    with open_store(root, read_only=True) as s:
        for attrs, text in dom.cells:
            field = attrs["data-field"]
            assert field in METRIC_FIELDS
            value = s.scalar(f"SELECT {field} FROM metrics WHERE metric_id = ?", [int(attrs["data-metric-id"])])
            assert _shown_equals(text, value), (attrs, text, value)
        shown = {int(a["data-metric-id"]) for a, _ in dom.cells}
        # every latest whole-set result of every run and layer, every residue type at the last
        # layer, every group of >= 10 proteins
        expected = {r[0] for r in s.con.execute(
            "SELECT metric_id FROM metrics_latest m WHERE (level = 'global' AND group_by = '') "
            "OR (level = 'local' AND layer = (SELECT list_max(layers) FROM runs r WHERE r.run_id = m.run_id)) "
            "OR (level = 'global' AND group_by <> '' AND n >= 10)").fetchall()}
        assert expected and expected <= shown
        # the paper table: one row per run, IsoScore shown for the last layer with the filter
        for run_id, layer in s.con.execute("SELECT run_id, list_max(layers) FROM runs").fetchall():
            iso = s.scalar("SELECT isoscore FROM metrics_latest WHERE run_id = ? AND layer = ? AND "
                           "level = 'global' AND group_by = '' AND filter = ?", [run_id, layer, WHERE])
            row = re.search(rf'<tr data-run="{re.escape(run_id)}">(.*?)</tr>', report.read_text()).group(1)
            assert f'data-field="isoscore">{fmt(iso)}</td>' in row
        # mean local effective dims per layer: the average over residue types of the metrics rows
        html = report.read_text()
        for run_id, layer, mean in s.con.execute(
                "SELECT run_id, layer, avg(effective_dims) FROM metrics WHERE level = 'local' "
                "AND group_by = 'residue' GROUP BY ALL").fetchall():
            shown = re.search(rf'data-local-mean="{re.escape(run_id)}/{layer}">([^<]*)<', html).group(1)
            assert _shown_equals(shown, mean), (run_id, layer, shown, mean)
        # correlations shown equal the view
        for attrs, text in dom.corr:
            key = attrs["data-corr"]
            assert re.fullmatch(r"[a-z_]+", key)
            values = [r[0] for r in s.con.execute(f"SELECT {key} FROM pair_correlations").fetchall()]
            assert any(_shown_equals(text, v) for v in values), (key, text, values)


@needs_browser
def test_screenshot_is_a_non_blank_png(reported, tmp_path):
    from PIL import Image

    _, report = reported
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", report.resolve().as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
    assert img.shape == (4000, 1280)
    assert img.std() > 20                                   # text and figures, not a blank page
    assert (img < 128).mean() > 0.01                        # some dark ink
    assert len(np.unique(img)) > 50


@needs_browser
def test_broken_image_is_detected(reported, tmp_path):
    """The check can fail: corrupt one figure's PNG data and the browser reports it."""
    _, report = reported
    html = report.read_text()
    first = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]{40})', html)
    bad = html.replace(first.group(0), 'src="data:image/png;base64,' + "A" * 40, 1)
    broken = tmp_path / "broken.html"
    broken.write_text(bad)
    dom = parse(render(broken, tmp_path))
    assert dom.check.get("data-checked") == "yes"
    assert dom.check.get("data-broken") == "spectra"


def test_empty_store_report_says_what_to_run(store, tmp_path):
    path = build_report(store, tmp_path / "empty")
    html = path.read_text()
    for sid, _ in SECTIONS:
        section = re.search(rf'<section id="{sid}".*?</section>', html, re.S).group(0)
        assert 'class="empty"' in section, sid
    assert "<img" not in html


def test_cli_report_writes_and_prints_path(reported, tmp_path, invoke):
    root, _ = reported
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    res = invoke("--store", copy, "report", "--out", tmp_path / "cli-out", "--json")
    assert res.exit_code == 0, res.output
    assert '"report"' in res.stdout and (tmp_path / "cli-out" / "report.html").exists()
    res = invoke("--store", tmp_path / "nothing-here", "report")
    assert res.exit_code == 1 and "no store" in res.output
