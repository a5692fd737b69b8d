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
METRIC_FIELDS = {"layer", "n", "d", "isoscore", "effective_dims", "avg_cosine", "intrinsic_dim_twonn",
                 "intrinsic_dim_mle", "intrinsic_n_duplicates", "rogue_top_share", "isoscore_lo", "isoscore_hi",
                 "isoscore_bias", "avg_cosine_lo", "avg_cosine_hi", "avg_cosine_bias"}


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
        self.cells, self.corr, self.go_corr = [], [], []
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
        elif tag == "td" and "data-go-corr" in a:
            self._open = ("go_corr", a, [])

    def handle_data(self, data):
        if self._open:
            self._open[2].append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._open:
            kind, a, text = self._open
            {"metric": self.cells, "corr": self.corr, "go_corr": self.go_corr}[kind].append(
                (a, "".join(text).strip()))
            self._open = None


def parse(dom: str) -> _Dom:
    p = _Dom()
    p.feed(dom)
    return p


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """(store root, report path) of the shared small analysed store, plus what goes beyond the
    paper: the bundled GO slice with Resnik/Lin per pair, intrinsic dimension at every layer of
    protiso-mini, and BCa intervals at its last layer."""
    from protiso.go.store import bundled_obo, ingest_obo
    from protiso.isotropy.engine import isotropy
    from protiso.pairs.functional import go_semantic_pair_set

    root, _ = build(tmp_path_factory.mktemp("report") / "store", sample_files())
    with open_store(root) as s:
        ingest_obo(s, bundled_obo())
        for (pair_set,) in s.con.execute("SELECT name FROM pair_sets").fetchall():
            go_semantic_pair_set(s, pair_set)
        isotropy(s, "protiso-mini", "all", where=WHERE, intrinsic=True)
        isotropy(s, "protiso-mini", where=WHERE, bootstrap=40)
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
    for prefix in ("spectra", "layers", "checkpoints", "groups-", "local-", "corr-", "pairs-", "go-",
                   "intrinsic-", "go-semantic-"):
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
        # intrinsic dimension at every layer, rogue dimensions and intervals are shown from their rows
        fields = {(int(a["data-metric-id"]), a["data-field"]) for a, _ in dom.cells}
        newest = ("SELECT max(metric_id) FROM metrics WHERE intrinsic_dim_twonn IS NOT NULL AND level = 'global' "
                  "AND group_by = '' GROUP BY run_id, layer, filter")    # older rows are superseded
        for (mid,) in s.con.execute(newest).fetchall():
            assert (mid, "intrinsic_dim_twonn") in fields and (mid, "intrinsic_dim_mle") in fields
        assert s.scalar("SELECT count(DISTINCT layer) FROM metrics WHERE intrinsic_dim_twonn IS NOT NULL") >= 2
        boot = s.scalar("SELECT metric_id FROM metrics WHERE bootstrap > 0 AND ci_method = 'bca'")
        assert {(boot, f) for f in ("isoscore_lo", "isoscore_hi", "isoscore_bias")} <= fields
        assert any(f == "rogue_top_share" for _, f in fields)
        for attrs, text in dom.go_corr:                       # GO semantic correlations equal the view
            measure, var = attrs["data-go-corr"].split("/")
            assert re.fullmatch(r"[a-z_]+", measure) and var in ("cosine", "sq_euclidean", "score", "identity")
            values = [r[0] for r in s.con.execute(f"SELECT {var} FROM pair_go_correlations WHERE measure = ?",
                                                  [measure]).fetchall()]
            assert any(_shown_equals(text, v) for v in values), (measure, var, text, values)
        assert {a["data-go-corr"].split("/")[0] for a, _ in dom.go_corr} >= {"go_jaccard", "resnik_bp", "lin_bp"}
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


# ---------------------------------------------------------------------------- what the report compares

def _small_store(root: Path):
    """The sample with a fake ProtBERT run (32-d, so that small groups have n <= d) and its
    whole-set and per-length-group isotropy."""
    from support import fake_run

    from protiso.ingest import ingest
    from protiso.isotropy.engine import isotropy

    fasta, go, flat = sample_files()
    with open_store(root, create=True) as s:
        ingest(s, [fasta, flat], annotations=[go])
        accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins ORDER BY accession LIMIT 400").fetchall()]
        X = np.random.default_rng(3).normal(size=(len(accs), 32)) @ np.diag(np.linspace(0.2, 3, 32))
        fake_run(s, "prot-bert-0badcafe", {30: (accs, X)}, model="prot_bert", model_id="Rostlab/prot_bert",
                 family="bert", num_layers=30)
        isotropy(s, "prot_bert")
        isotropy(s, "prot_bert", group_by="length // 150")
    return root


@needs_browser
def test_paper_table_sets_published_beside_measured_and_flags_n_le_d(tmp_path):
    root = _small_store(tmp_path / "store")
    with open_store(root, read_only=True) as s:
        path = build_report(s, tmp_path / "out")
        iso, dims = s.one("SELECT isoscore, effective_dims FROM metrics_latest WHERE group_by = ''")
        groups = s.con.execute("SELECT group_key, n, d FROM metrics_latest WHERE group_by <> '' AND n >= 10").fetchall()
    dom = render(path, tmp_path)
    table = re.search(r'<table id="paper-table-rows">.*?</table>', dom, re.S).group(0)
    row = re.search(r'<tr data-run="prot-bert-0badcafe">(.*?)</tr>', table, re.S).group(1)
    assert 'data-published="ProtBERT">0.001658</td>' in row               # published ...
    assert f'data-field="isoscore">{fmt(iso)}</td>' in row                 # ... beside measured
    assert f'data-diff="isoscore">{iso - 0.001658:+.6f}</td>' in row       # ... and the difference
    assert f'data-diff="effective_dims">{dims - 3:+.1f}</td>' in row
    for key in ("prot_bert_bfd", "prot_xlnet", "proteinbert"):             # the paper's other models
        assert f'data-published-only="{key}"' in table
    assert "&mdash;" not in table and "—" not in table
    flagged = re.findall(r'<tr><td class="t">([^<]*)</td>(?:(?!</tr>).)*data-flag="n-le-d"', dom, re.S)
    assert sorted(flagged) == sorted(str(k) for k, n, d in groups if n <= d) and flagged
    assert len(flagged) < len(groups)                                      # and only those
    assert re.search(rf"{len(flagged)} with n ≤ d \(hatched\)", dom)


@needs_browser
def test_every_figure_fits_its_canvas_and_the_settings_are_stated(reported, tmp_path):
    root, report = reported
    dom = render(report, tmp_path)
    parsed = parse(dom)
    assert parsed.images and all(img.get("data-clipped") == "" for img in parsed.images), \
        [(i.get("data-figure"), i.get("data-clipped")) for i in parsed.images if i.get("data-clipped")]
    settings = re.search(r'<div id="settings">(.*?)</div>', dom, re.S).group(1)
    with open_store(root, read_only=True) as s:
        for run_id, max_length, truncated, done in s.con.execute(
                "SELECT run_id, max_length, n_truncated, n_done FROM runs").fetchall():
            line = re.search(rf'data-settings-run="{re.escape(run_id)}">(.*?)</span></li>', settings, re.S).group(1)
            assert f"at most {max_length} residues per protein" in line
            assert f"{truncated} truncated of {done} proteins" in line and truncated > 0
        # GO panel: pairs per bin shown, summing to the pairs with GO terms on both sides
        for pair_set, run_id in s.con.execute("SELECT DISTINCT pair_set, run_id FROM pair_correlations").fetchall():
            n = s.scalar("SELECT count(*) FROM pair_metrics WHERE pair_set = ? AND run_id = ? "
                         "AND go_jaccard IS NOT NULL", [pair_set, run_id])
            assert f"{run_id} layer" in dom and f"{n:,} pairs with GO terms on both sides" in dom
    with open_store(root, read_only=True) as s:
        demo = build_report(s, tmp_path / "demo", settings={"models": ["protiso-mini"], "max_length": 64})
    assert "Run with: models = protiso-mini; max_length = 64" in demo.read_text()


def _axes_of(monkeypatch, draw):
    """The axes a figure function drew (captured before the figure is closed)."""
    from protiso.report import figures

    seen = {}
    real = figures.to_data_uri

    def capture(fig):
        fig.canvas.draw()
        seen["axes"] = [(ax.get_xticks(), ax.get_ylim(), [t.get_text() for t in ax.get_xticklabels()],
                         len(ax.containers)) for ax in fig.axes]
        return real(fig)

    monkeypatch.setattr(figures, "to_data_uri", capture)
    draw(figures)
    return seen["axes"]


def test_layer_axes_have_integer_ticks(monkeypatch):
    for layers in ([0, 1], [0, 1, 2, 3, 4], [0, 3, 30]):
        axes = _axes_of(monkeypatch, lambda f: f.two_panel_lines(
            [("m", layers, [0.1] * len(layers), [2.0] * len(layers))], "layer", ("IsoScore", "dims")))
        for ticks, _, _, _ in axes:
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_go_panel_has_full_axes_intervals_and_n(monkeypatch):
    bins = [{"lo": 0.0, "hi": 0.2, "n_pairs": 300, "cosine": 0.981, "cosine_sd": 0.01, "identity": 0.05,
             "identity_sd": 0.02},
            {"lo": 0.2, "hi": 0.4, "n_pairs": 9, "cosine": 0.986, "cosine_sd": 0.02, "identity": 0.13,
             "identity_sd": 0.05}]
    axes = _axes_of(monkeypatch, lambda f: f.binned_means(
        bins, "GO Jaccard", [("cosine", "cosine", (-1.0, 1.0)), ("identity", "identity", (0.0, 1.0))]))
    (_, ylim_cos, labels, containers), (_, ylim_id, _, _) = axes
    assert ylim_cos[0] <= -1.0 and ylim_cos[1] >= 1.0        # not zoomed to 0.981-0.986
    assert ylim_id[0] <= 0.0 and ylim_id[1] >= 1.0
    assert containers >= 1                                   # error bars (95% intervals of the mean)
    assert labels == ["0.0–0.2\nn=300", "0.2–0.4\nn=9"]


def test_clipping_check_can_fail():
    from protiso.report import figures

    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(3, 2))
    fig.text(0.9, 0.5, "a label running off the right edge of the canvas")
    assert figures.to_data_uri(fig).clipped
    long_title = figures.bars(["a", "b"], [1.0, 2.0], "y", "a title " * 40)
    assert long_title.clipped == ()                          # long titles are wrapped to fit


def test_cli_reproduce_writes_the_report_and_tells_each_reason_once(reported, tmp_path, invoke):
    root, _ = reported
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    (copy / "report").mkdir(exist_ok=True)
    res = invoke("--store", copy, "reproduce", "--models", "protiso-mini@step0,prot_xlnet", "--where", WHERE,
                 "--max-length", "64", "--no-local", "--pair-proteins", "30", "--seed", "7", "--device", "cpu",
                 "--dtype", "float32")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("Rostlab/prot_xlnet' is not available") == 1, res.stderr
    assert f"report: {copy / 'report' / 'report.html'}" in res.stderr
    assert (copy / "report" / "report.html").exists()


@needs_browser
def test_go_groups_are_named_and_intervals_flag_small_n(reported, tmp_path):
    root, report = reported
    dom = render(report, tmp_path)
    groups = re.search(r'<section id="groups".*?</section>', dom, re.S).group(0)
    with open_store(root, read_only=True) as s:
        keys = [k for (k,) in s.con.execute("SELECT DISTINCT group_key FROM metrics_latest WHERE group_by LIKE "
                                            "'%list_contains(terms%' AND n >= 10 AND group_key LIKE 'GO:%'").fetchall()]
        named = {k: s.scalar("SELECT name FROM go_terms WHERE term = ?", [k]) for k in keys}
        n, d = s.one("SELECT n, d FROM metrics WHERE bootstrap > 0")
    assert named and all(named.values())
    for key, name in named.items():                          # GO ids never bare: id (name)
        assert f"{key} ({name})" in groups, key
        assert not re.search(rf">{re.escape(key)}</td>", groups)
    intervals = re.search(r'<section id="intervals".*?</section>', dom, re.S).group(0)
    assert "BCA 95%" in intervals
    assert ('data-flag="n-le-5d"' in intervals) == (n <= 5 * d)
