"""report.html: the page of a run, of a sweep and of cnntrain-compare: self-contained (every picture a data: URI,
nothing off the page), escaped, written only inside its folder, and rendered by a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from cnntrain.commands import compare
from cnntrain.commands.train import main as train_main
from cnntrain.errors import UserError
from cnntrain.reporting.page import per_class_from_matrix, write_run_page

from helpers import TINY_RUN, run_main
from synthetic_images import draw

PNG = b"\x89PNG\r\n\x1a\n"
HOSTILE = ("<script>alert(1)</script>", "[/bold]")
RUN_SECTIONS = (
    "results",
    "curves",
    "per-class",
    "worst",
    "calibration",
    "augment",
    "misclassified",
    "model",
    "config",
    "provenance",
)


class Parsed(HTMLParser):
    """Every tag with its attributes, the text, and the ids of the sections."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def sections(self) -> list[str]:
        return [attrs["id"] for attrs in self.all("section")]


def check_self_contained(text: str) -> Parsed:
    """The page parses; every <img> is an inlined PNG; no script, stylesheet link, frame, or URL off the page."""
    parsed = Parsed(text)
    assert parsed.all("html") and parsed.all("title") and parsed.all("style")
    for tag in ("script", "link", "iframe", "object", "embed", "base", "form"):
        assert not parsed.all(tag), f"<{tag}> on a page that must work alone"
    for attrs in parsed.all("img"):
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            value = (value or "").strip().lower()
            if name == "src":
                assert value.startswith("data:image/png;base64,")
            if name == "href":
                assert value.startswith("#") or not (
                    "://" in value or value.startswith(("/", "//", "data:", "javascript:"))
                )
            assert not value.startswith(("http:", "https:", "//", "ftp:", "file:")), (tag, name, value)
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
    lowered = text.lower()
    assert "http://" not in lowered and "https://" not in lowered and "url(" not in lowered and "@import" not in lowered
    return parsed


_shared: dict[str, Path] = {}


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """The pages show whatever a run measured: the runs here train on the small set."""
    return small_data_root


def train(folder: Path, data_root: Path, *overrides: str) -> Path:
    """A tiny run through the CLI's main in this process, into folder/run; returns the run directory."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        result = run_main(
            train_main,
            [*TINY_RUN, "trainer.progress=false", *overrides, f"hydra.run.dir='{folder / 'run'}'"],
            folder,
            monkeypatch,
            CNNTRAIN_DATA_ROOT=str(data_root),
        )
    assert result.returncode == 0, result.stderr
    return folder / "run"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_data_root) -> Path:
    """A tiny run with its pictures (and an augmentation preview)."""
    if "run" not in _shared:
        _shared["run"] = train(
            tmp_path_factory.mktemp("page"),
            synthetic_data_root,
            "report.plots=true",
            "dataset.augment=[{translate: 2}]",
        )
    return _shared["run"]


@pytest.mark.slow
def test_the_run_page_holds_every_part_inline(finished_run):
    page = finished_run / "report.html"
    parsed = check_self_contained(page.read_text(encoding="utf-8"))
    assert parsed.sections == list(RUN_SECTIONS)
    images = parsed.all("img")
    assert [attrs["alt"] for attrs in images] == [
        "curves.png",
        "confusion_matrix.png",
        "per_class.png",
        "worst_mistakes.png",
        "reliability.png",
        "augment_preview.png",
        "misclassified.png",
    ]
    for attrs in images:  # exactly the PNG the run wrote, inlined
        data = base64.b64decode((attrs["src"] or "").split(",", 1)[1])
        assert data == (finished_run / str(attrs["alt"])).read_bytes()
    summary = json.loads((finished_run / "summary.json").read_text())
    text = " ".join(parsed.text)
    for fragment in (
        "test/acc",
        "best checkpoint",
        "last epoch",
        "balanced accuracy",
        "macro-F1",
        "Most confused",
        "Per class",
        "precision",
        "from the run's analysis",
        "LayerCAM",
        "ECE",
        "output shape",
        "MACs",
        summary["versions"]["torch"],
        "model:",
        "name: cnn2",
        "translate",
        "cpu instruction set",
        summary["cpu"]["capability"],
    ):
        assert fragment in text, fragment
    assert f"{summary['test']['acc'] * 100:.2f}%" in text
    assert sum(summary["classes"][0] in part for part in parsed.text) >= 2  # per-class table and confused pairs
    assert len(parsed.all("tr")) > 10 + len(summary["model_summary"])


@pytest.mark.slow
def test_summary_json_keeps_the_model_summary_rows(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    rows = summary["model_summary"]
    assert rows and all({"layer", "output", "params", "macs"} <= set(row) for row in rows)
    assert rows[0]["layer"] == "conv_block" or rows[0]["layer"].startswith("conv")
    assert rows[-1]["output"] == "10", "the classifier's output: one score per class"
    top = [row for row in rows if "part_of" not in row]
    assert sum(row["params"] for row in top) == summary["params"]
    assert sum(row["macs"] for row in top) == summary["macs_per_image"] > 0


@pytest.mark.slow
def test_the_page_is_rewritable_and_cheap(finished_run, tmp_path, monkeypatch):
    from cnntrain.commands import report_page

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / "report.html").unlink()
    result = run_main(report_page.main, [str(copy)], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    assert (copy / "report.html").read_text() == write_run_page(copy).read_text()
    assert "wrote " in result.stdout
    nowhere = run_main(report_page.main, [str(tmp_path / "nowhere")], tmp_path, monkeypatch)
    assert nowhere.returncode == 2 and "run directory not found" in nowhere.stderr


@pytest.mark.slow
def test_without_plots_the_page_has_its_tables_and_html_false_writes_none(tmp_path, synthetic_data_root):
    (tmp_path / "a").mkdir()
    plain = train(tmp_path / "a", synthetic_data_root)
    parsed = check_self_contained((plain / "report.html").read_text())
    assert not parsed.all("img") and not list(plain.glob("*.png"))
    assert {"results", "per-class", "model", "config", "provenance"} <= set(parsed.sections)
    assert "curves.png not in the run directory" in " ".join(parsed.text)
    (tmp_path / "b").mkdir()
    off = train(tmp_path / "b", synthetic_data_root, "report.html=false")
    assert (off / "summary.json").is_file() and not (off / "report.html").exists()


def fake_analysis_run(source: Path, target: Path) -> Path:
    """A copy of a run with the analysis keys in summary.json and its three pictures, as the analysis writes them."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    summary = json.loads((target / "summary.json").read_text())
    classes = summary["classes"]
    summary["analysis"] = {
        "per_class": {
            name: {"precision": 0.9, "recall": 0.25 if i == 1 else 0.8, "f1": 0.7, "support": 30}
            for i, name in enumerate(classes)
        },
        "most_confused": [{"true": classes[1], "predicted": classes[2], "count": 7}],
        "calibration": {
            "ece": 0.0421,
            "bins": 3,
            "confidence": [0.2, 0.5, 0.9],
            "accuracy": [0.1, 0.6, 0.95],
            "count": [5, 10, 285],
        },
        "worst_mistakes": [
            {
                "index": 17,
                "true": classes[1],
                "predicted": classes[2],
                "probability": 0.99,
                "true_probability": 0.004,
                "loss": 5.52,
            },
            {
                "index": 3,
                "true": classes[0],
                "predicted": classes[1],
                "probability": 0.8,
                "true_probability": 0.1,
                "loss": 2.3,
            },
        ],
        "cam": {"method": "gradcam", "layer": "conv_block 3"},
    }
    (target / "summary.json").write_text(json.dumps(summary))
    for name, colour in (("worst_mistakes", "red"), ("reliability", "green"), ("per_class", "blue")):
        Image.new("RGB", (60, 40), colour).save(target / f"{name}.png")
    return target


@pytest.mark.slow
def test_the_analysis_is_rendered_when_present(finished_run, tmp_path):
    run = fake_analysis_run(finished_run, tmp_path / "analysed")
    parsed = check_self_contained(write_run_page(run).read_text())
    assert parsed.sections == [
        "results",
        "curves",
        "per-class",
        "worst",
        "calibration",
        "augment",
        "misclassified",
        "model",
        "config",
        "provenance",
    ]
    alts = [attrs["alt"] for attrs in parsed.all("img")]
    assert {"per_class.png", "worst_mistakes.png", "reliability.png"} <= set(alts)
    text = " ".join(parsed.text)
    for fragment in ("0.0421", "gradcam", "conv_block 3", "5.520", "0.004", "from the run's analysis", "2 mistakes"):
        assert fragment in text, fragment
    assert len(parsed.all("tr")) >= 2 + 1 + 3 + 1, "worst mistakes and bins tables"
    bad_rows = [attrs for attrs in parsed.all("tr") if attrs.get("class") == "bad"]
    assert len(bad_rows) == 1, "the class with recall 0.25 is marked"


def test_per_class_fallback_from_the_confusion_matrix():
    metrics = per_class_from_matrix(["a", "b"], [[8, 2], [0, 0]])
    assert metrics["a"] == {"precision": 1.0, "recall": 0.8, "f1": pytest.approx(2 * 0.8 / 1.8), "support": 10}
    assert metrics["b"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}  # predicted, never present
    assert per_class_from_matrix(["a"], [[1, 2]]) == {} and per_class_from_matrix(["a"], "nope") == {}


@pytest.mark.slow
def test_hostile_names_are_text(finished_run, tmp_path, synthetic_data_root):
    # summary.json may hold anything: class names and config values exactly as a hostile folder would give them
    run = fake_analysis_run(finished_run, tmp_path / "hostile")
    summary = json.loads((run / "summary.json").read_text())
    old = summary["classes"][:2]
    summary["classes"][:2] = HOSTILE
    summary["analysis"]["per_class"] = {
        HOSTILE[i] if name in old else name: value
        for i, (name, value) in enumerate(summary["analysis"]["per_class"].items())
    }
    summary["analysis"]["worst_mistakes"][0].update(true=HOSTILE[0], predicted=HOSTILE[1])
    summary["analysis"]["most_confused"][0]["true"] = HOSTILE[1]
    summary["model"] = "<i>model</i>"
    (run / "summary.json").write_text(json.dumps(summary))
    config = run / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + 'note: "</pre><script>alert(2)</script>"\n')
    text = write_run_page(run).read_text()
    parsed = check_self_contained(text)  # no <script>, no <i> tag: they are text
    assert not parsed.all("i")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;/pre&gt;&lt;script&gt;alert(2)" in text
    joined = "".join(parsed.text)
    # per-class table and worst mistakes (both names), most confused (the second)
    assert joined.count(HOSTILE[0]) == 2 and joined.count(HOSTILE[1]) == 3 and "<i>model</i>" in joined


@pytest.mark.slow
def test_hostile_class_folders_train_and_render_as_text(tmp_path):
    import numpy as np

    names = ("<img src=x onerror=alert(1)>", "[bold]red", "plain")  # a folder name cannot hold '/'
    rng = np.random.default_rng(0)
    for label, name in enumerate(names):
        folder = tmp_path / "data" / "train" / name
        folder.mkdir(parents=True)
        for i in range(20):
            draw(label, 16, rng, False).save(folder / f"{i}.png")
    run = train(
        tmp_path,
        tmp_path,
        "dataset=imagefolder",
        f"dataset.root='{tmp_path / 'data'}'",
        "trainer.batch_size=16",
        "report.plots=true",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(summary["classes"]) == sorted(names)
    text = (run / "report.html").read_text()
    parsed = check_self_contained(text)
    assert len(parsed.all("img")) == 6 and all((a["src"] or "").startswith("data:") for a in parsed.all("img"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "".join(parsed.text).count("[bold]red") >= 2


def test_the_page_is_never_written_or_read_through_a_symlink(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps({"status": "done", "model": "m", "dataset": "d", "classes": ["a"], "confusion_matrix": [[1]]})
    )
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), "white").save(secret)
    (run / "curves.png").symlink_to(secret)
    page = write_run_page(run).read_text()
    assert "curves.png not in the run directory" in page and "data:image" not in page, "a symlinked picture is read"
    outside = tmp_path / "outside.html"
    outside.write_text("keep me")
    (run / "report.html").unlink()
    (run / "report.html").symlink_to(outside)
    with pytest.raises(UserError, match="symlink"):
        write_run_page(run)
    assert outside.read_text() == "keep me"
    with pytest.raises(UserError, match="no summary.json"):
        write_run_page(tmp_path)


# ---------------------------------------------------------------- the sweep and compare pages


@pytest.fixture(scope="module")
def two_job_sweep(tmp_path_factory, synthetic_data_root) -> Path:
    if "sweep" not in _shared:
        folder = tmp_path_factory.mktemp("sweep")
        with pytest.MonkeyPatch.context() as monkeypatch:
            result = run_main(
                train_main,
                [
                    "-m",
                    *TINY_RUN,
                    "trainer.epochs=1",
                    "trainer.progress=false",
                    "report.plots=true",
                    "optimizer.lr=1e-3,1e-2",
                    f"hydra.sweep.dir='{folder / 'sweep'}'",
                ],
                folder,
                monkeypatch,
                CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
            )
        assert result.returncode == 0, result.stderr
        assert "report.html" in result.stdout
        _shared["sweep"] = folder / "sweep"
    return _shared["sweep"]


@pytest.mark.slow
def test_the_sweep_page_links_each_job_relatively(two_job_sweep, tmp_path):
    moved = shutil.copytree(two_job_sweep, tmp_path / "moved")  # relative links survive a move (or a zip)
    parsed = check_self_contained((moved / "report.html").read_text())
    links = [attrs["href"] for attrs in parsed.all("a") if not (attrs["href"] or "").startswith("#")]
    assert sorted(links) == ["0/report.html", "1/report.html"]
    assert all((moved / str(link)).is_file() for link in links)
    assert [attrs["alt"] for attrs in parsed.all("img")] == ["sweep_summary.png"]
    text = " ".join(parsed.text)
    assert "2 done, 0 failed" in text and "optimizer.lr=0.001" in text and "optimizer.lr=0.01" in text
    # a killed job: listed last, in red, with no link (it has no page)
    from cnntrain.reporting.sweep_page import write_sweep_page
    from cnntrain.reporting.sweep_rows import collect

    (moved / "2" / ".hydra").mkdir(parents=True)
    (moved / "2" / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n")
    parsed = check_self_contained(write_sweep_page(moved, collect(moved)).read_text())
    assert [attrs.get("class") for attrs in parsed.all("tr")] == [None, None, None, "bad"]
    assert len([a for a in parsed.all("a") if not (a["href"] or "").startswith("#")]) == 2
    assert "2 done, 1 failed" in " ".join(parsed.text) and "no summary.json" in " ".join(parsed.text)


def test_the_sweep_in_a_notebook_links_pages_that_open_from_the_notebook(tmp_path, monkeypatch):
    """Sweep._repr_html_'s links: relative to the kernel's folder (Jupyter resolves them against the notebook's)
    when the sweep lies below it, an absolute file:// URI when it does not; the sweep's own page stays relative."""
    from cnntrain.reporting.sweep_page import sweep_fragment, sweep_page
    from cnntrain.reporting.sweep_rows import JobRow

    sweep = tmp_path / "notebooks" / "multirun" / "my sweep"
    for job in ("0", "1"):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "report.html").write_text("<html></html>")
    rows = [JobRow(job, "done", [f"optimizer.lr={lr}"], {"best": 0.5}) for job, lr in (("0", 0.1), ("1", 0.2))]

    def links(text: str) -> list[str]:
        return [str(a["href"]) for a in Parsed(text).all("a") if not str(a["href"]).startswith("#")]

    monkeypatch.chdir(tmp_path / "notebooks")
    assert links(sweep_fragment(sweep, rows)) == [
        "multirun/my%20sweep/0/report.html",
        "multirun/my%20sweep/1/report.html",
    ]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert links(sweep_fragment(sweep, rows)) == [(sweep / job / "report.html").resolve().as_uri() for job in "01"]
    assert links(sweep_page(sweep, rows)) == ["0/report.html", "1/report.html"]


@pytest.mark.slow
def test_the_compare_page(two_job_sweep, finished_run, tmp_path, monkeypatch):
    out = tmp_path / "pages" / "compare.html"
    out.parent.mkdir()
    result = run_main(
        compare.main,
        [str(two_job_sweep), str(finished_run), "--out", str(tmp_path / "c.png"), "--html", str(out)],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    parsed = check_self_contained(out.read_text())
    assert [attrs["alt"] for attrs in parsed.all("img")] == ["c.png"]
    links = [str(attrs["href"]) for attrs in parsed.all("a") if not (attrs["href"] or "").startswith("#")]
    assert len(links) == 3 and all(link.startswith("../") for link in links)
    assert all((out.parent / link).resolve().is_file() for link in links)
    assert "optimizer.lr" in " ".join(parsed.text)
    bad = run_main(compare.main, [str(finished_run), "--html", str(tmp_path / "page.txt")], tmp_path, monkeypatch)
    assert bad.returncode == 2 and "--html" in bad.stderr and ".html" in bad.stderr


# ---------------------------------------------------------------- a real browser


def chromium_binary() -> str | None:
    return next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )


needs_chromium = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium not installed (Debian: apt-get install chromium)"
)

# The test harness may use a script (the page never does): count the images and what failed to load, and any
# resource the page fetched (a data: URI is not one), into the title that --dump-dom prints.
PROBE = (
    '<script>addEventListener("load", () => { const all = [...document.images]; const broken = all.filter('
    'i => !(i.complete && i.naturalWidth > 0)).length; document.title = "probe images=" + all.length + '
    '" broken=" + broken + " fetched=" + performance.getEntriesByType("resource").length; });</script>'
)


def chromium(page: Path, *flags: str, home: Path) -> subprocess.CompletedProcess:
    command = [
        str(chromium_binary()),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *flags,
        page.resolve().as_uri(),
    ]
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def render(page: Path, shot: Path, home: Path, size: str = "1280,2400") -> dict[str, int]:
    """Screenshot `page` into `shot` (checked to be a non-blank PNG) and return what the probe counted."""
    result = chromium(page, f"--screenshot={shot}", f"--window-size={size}", home=home)
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        gray = image.convert("L")
        histogram = gray.histogram()
        ink = sum(histogram[:200]) / (gray.width * gray.height)
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert ink > 0.01 and colours > 50, f"blank screenshot ({ink:.4f} ink, {colours} colours)"
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = chromium(probed, "--dump-dom", "--virtual-time-budget=10000", home=home)
    finally:
        probed.unlink()
    words = _title(dom.stdout)
    assert words.startswith("probe "), (words, dom.stderr[-2000:])
    return {key: int(value) for key, value in (part.split("=") for part in words.split()[1:])}


def _title(dom: str) -> str:
    start = dom.find("<title>")
    return dom[start + len("<title>") : dom.find("</title>", start)] if start >= 0 else ""


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_run_page_with_every_image(finished_run, tmp_path):
    analysed = fake_analysis_run(finished_run, tmp_path / "analysed")
    for run, images in ((finished_run, 7), (analysed, 7)):
        page = run / "report.html" if run == finished_run else write_run_page(run)
        probe = render(page, tmp_path / f"{run.name}.png", tmp_path)
        assert probe == {"images": images, "broken": 0, "fetched": 0}, probe


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_sweep_and_compare_pages(two_job_sweep, finished_run, tmp_path, monkeypatch):
    probe = render(two_job_sweep / "report.html", tmp_path / "sweep.png", tmp_path, "1280,1400")
    assert probe == {"images": 1, "broken": 0, "fetched": 0}, probe
    out = tmp_path / "compare.html"
    result = run_main(
        compare.main,
        [str(two_job_sweep), str(finished_run), "--out", str(tmp_path / "c.png"), "--html", str(out)],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    probe = render(out, tmp_path / "compare-shot.png", tmp_path, "1280,1400")
    assert probe == {"images": 1, "broken": 0, "fetched": 0}, probe


@needs_chromium
def test_the_probe_sees_a_broken_image(tmp_path):
    """The browser check is not vacuous: a page with a missing picture is caught."""
    good = io.BytesIO()
    Image.new("RGB", (300, 200), "teal").save(good, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(good.getvalue()).decode()
    page = tmp_path / "p.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><title>t</title></head><body><h1>some text here</h1>"
        f"<img src='{uri}'><img src='data:image/png;base64,AAAA'>"
        + "".join(f"<p style='color:#{i:02x}{i:02x}80'>line {i}</p>" for i in range(0, 250, 3))
        + "</body></html>"
    )
    assert render(page, tmp_path / "p.png", tmp_path, "800,1200") == {"images": 2, "broken": 1, "fetched": 0}


def test_the_console_tables_print_class_names_as_text():
    """Class names come from data (folders, label files, Hugging Face features): rich markup in them is text."""
    import torch
    from rich.console import Console

    from cnntrain.reporting.tables import most_confused_table, per_class_table

    names = ["[/bold]", "[bold]red", "plain"]
    console = Console(record=True, width=120)
    console.print(per_class_table(names, [1.0, 0.5, None], torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0]])))
    console.print(most_confused_table([{"true": "[bold]red", "predicted": "[/bold]", "count": 1}]))
    text = console.export_text()
    assert text.count("[/bold]") == 2 and text.count("[bold]red") == 2
