"""``python -m harness export`` and ``harness.load_results``: paper tables whose numbers are the run's.

The runs are made by the report tests' ``make_run`` (a finished run folder, no training), with
the rows a current run adds: a method whose name needs escaping, the shortcut floor, and paired
differences against the fixed references with their Holm-adjusted p-values (schema 2).
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.export import export_text
from harness.paper_tables import build_table
from harness.table_formats import latex_escape
from reports.figures import Interval, forest_plot
from test_reports import make_run

ODD = "my_method"  # a name LaTeX must see escaped


def _row(method: str, metric: str, value: float, half: float = 0.05, **extra) -> dict:
    return {"method": method, "split": "test", "domain": "all", "metric": metric, "feature_space": None,
            "value": value, "std": None, "ci_low": value - half, "ci_high": value + half, "n": 40, "note": None,
            "other": None, "p_value": None, "p_holm": None, **extra}


def finished_run(runs: Path, run_id: str, seed: int) -> Path:
    """make_run's folder, upgraded to a schema-2 run with the floor and the paired tests."""
    folder = make_run(runs, run_id, seed=seed)
    info = json.loads((folder / "run.json").read_text())
    info["methods"][ODD] = {"status": "complete", "capabilities": ["scores"], "supervision": "healthy_only",
                            "timings": {}, "error": None}
    info["split"]["hash"] = f"hash{seed}"
    (folder / "run.json").write_text(json.dumps(info))
    doc = json.loads((folder / "metrics.json").read_text())
    shift = seed / 1000
    rows = doc["rows"] + [_row(ODD, "auroc", 0.612 + shift), _row(ODD, "ap", 0.581 + shift),
                          _row("shortcut-floor", "auroc", 0.55 + shift), _row("shortcut-floor", "ap", 0.52),
                          _row(ODD, "pixel_auroc", 0.70 + 3 * shift), _row("intensity", "pixel_auroc", 0.66 + shift)]
    for k, method in enumerate(("resnet18", "cyclegan", ODD)):
        for reference in ("intensity", "shortcut-floor"):
            for metric in ("auroc_delta", "ap_delta"):
                rows.append(_row(method, metric, 0.1 * (k + 1) + shift, other=reference, p_value=0.01 * (k + 1),
                                 p_holm=0.03 * (k + 1), note="p: subject permutation test; Holm"))
                rows.append(_row(reference, metric, -(0.1 * (k + 1) + shift), other=method, p_value=0.01 * (k + 1)))
    doc.update(schema_version=2, rows=[{"p_holm": None, "other": None, "p_value": None, **r} for r in rows])
    (folder / "metrics.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture
def run(tmp_path) -> Path:
    return finished_run(tmp_path / "runs", "run_a", seed=100)


def _stored(folder: Path) -> list[dict]:
    return json.loads((folder / "metrics.json").read_text())["rows"]


def _overall(folder: Path, method: str, metric: str) -> dict:
    (row,) = [r for r in _stored(folder) if r["method"] == method and r["metric"] == metric
              and r["domain"] == "all" and r.get("other") is None and r["feature_space"] is None]
    return row


def _unescaped(text: str, char: str) -> int:
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text))


def _tabular(latex: str) -> tuple[int, list[str]]:
    """The tabular's column count and its header and body lines."""
    lines = latex.splitlines()
    (spec,) = [re.fullmatch(r"\\begin\{tabular\}\{([lrc]+)\}", ln).group(1) for ln in lines
               if ln.startswith(r"\begin{tabular}")]
    top, mid, bottom = lines.index(r"\toprule"), lines.index(r"\midrule"), lines.index(r"\bottomrule")
    assert top < mid < bottom
    return len(spec), [lines[top + 1], *lines[mid + 1:bottom]]


def test_latex_headline_is_balanced_escaped_and_holds_the_runs_numbers(run):
    latex = export_text([str(run)], "headline", "latex")
    for env in ("table", "tabular"):
        assert latex.count(rf"\begin{{{env}}}") == latex.count(rf"\end{{{env}}}") == 1
    columns, lines = _tabular(latex)
    assert all(_unescaped(ln, "&") == columns - 1 and ln.endswith(r"\\") for ln in lines)
    assert _unescaped(latex.replace(r"\_", ""), "_") == 0 and r"my\_method" in latex and r"run\_a" in latex
    assert _unescaped(latex.split("\n", 1)[1], "%") == 0 and r"95\% CI" in latex  # only the leading comment is one
    body = lines[1:]
    labels = [ln.split(" & ")[0] for ln in body]
    assert sorted(labels) == sorted(["resnet18", "intensity", "cyclegan", r"my\_method", "shortcut floor"])
    assert labels[-1] == "shortcut floor"  # the floor stays in, last
    for method, label in (("resnet18", "resnet18"), ("intensity", "intensity"), (ODD, r"my\_method"),
                          ("shortcut-floor", "shortcut floor")):
        row = _overall(run, method, "auroc")
        (line,) = [ln for ln in body if ln.startswith(label + " &")]
        assert f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in line
        assert line.removesuffix(r" \\").endswith(f"& {row['n']}")
    caption = next(ln for ln in latex.splitlines() if ln.startswith(r"\caption{"))
    assert "Profile smoke" in caption and "seed 100" in caption and "split hash hash100" in caption


def test_csv_round_trips_and_markdown_holds_the_same_table(run):
    results = harness.load_results(run)
    table = build_table(results, "headline")
    parsed = list(csv.reader(io.StringIO(export_text([str(run)], "headline", "csv"))))
    assert parsed == [list(table.header), *map(list, table.rows)]
    md = export_text([str(run)], "headline", "markdown").splitlines()
    assert len([ln for ln in md if ln.startswith("|")]) == 2 + len(table.rows)
    assert md[-1].startswith("Table: Test-set detection") and "split hash hash100" in md[-1]


def test_a_tuned_variant_names_its_supervision_as_the_run_page_does(run):
    """A variant's validation masks are part of what it learnt from: the paper table says so in words."""
    info = json.loads((run / "run.json").read_text())
    info["methods"][ODD]["supervision"] = "healthy_only+val_masks"
    (run / "run.json").write_text(json.dumps(info))
    (row,) = [r for r in csv.reader(io.StringIO(export_text([str(run)], "headline", "csv"))) if r[0] == ODD]
    assert row[1] == "healthy only + validation masks"


def test_load_results_gives_the_auroc_of_metrics_json(run, tmp_path):
    results = harness.load_results(run)
    frame = results.metrics.query("metric == 'auroc' and domain == 'all' and split == 'test'")
    stored = {r["method"]: r["value"] for r in _stored(run)
              if r["metric"] == "auroc" and r["domain"] == "all" and r.get("other") is None}
    assert dict(zip(frame["method"], frame["value"])) == stored
    assert results.auroc().loc["run_a"].to_dict() == stored
    # a stratum row keeps its stratum; the floor keeps its rows; the run's keys are on every row
    assert set(results.metrics["stratum"].dropna()) == {"FLAIR", "T1"}
    assert (results.metrics["split_hash"] == "hash100").all() and (results.metrics["seed"] == 100).all()
    assert set(results.paired.query("reference")["other"]) == {"intensity", "shortcut-floor"}
    assert len(results.scores) == len(list(csv.DictReader((run / "scores.csv").open())))
    assert results.seed_summary.empty  # one run: nothing across seeds
    # a folder of runs loads each run in it
    assert harness.load_results(tmp_path / "runs").folders == (run.resolve(),)


def test_paired_table_reports_p_and_holm_as_metrics_json(run):
    table = build_table(harness.load_results(run), "paired")
    stored = [r for r in _stored(run) if r["other"] in ("intensity", "shortcut-floor")
              and r["method"] not in ("intensity", "shortcut-floor")]
    assert len(table.rows) == len(stored)  # each method minus each reference, never a floor minus a method
    for r in stored:
        other = "shortcut floor" if r["other"] == "shortcut-floor" else r["other"]
        title = "Δ AUROC" if r["metric"] == "auroc_delta" else "Δ AP"
        (row,) = [x for x in table.rows if x[:3] == (r["method"], other, title)]
        assert row[3] == f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        assert row[4:6] == (f"{r['p_value']:.3f}", f"{r['p_holm']:.3f}")


def test_generative_table_leaves_out_a_space_never_computed_and_says_so(run):
    table = build_table(harness.load_results(run), "generative")
    assert {row[2] for row in table.rows} == {"mri-resnet18"} and "inception-v3" in table.caption
    fid = table.header.index("FID")
    stored = next(r for r in _stored(run) if r["metric"] == "fid" and r["feature_space"] == "mri-resnet18")
    assert all(row[fid] == f"{stored['value']:.2f}" for row in table.rows)
    assert all(row[table.header.index("IS")] == "1.800 ± 0.100" for row in table.rows)  # schema-1 isc read as is


def test_runs_of_several_seeds_give_mean_and_sd_and_a_seeds_table(tmp_path):
    runs = [finished_run(tmp_path / "runs", f"run_{s}", seed=s) for s in (100, 101, 102)]
    results = harness.load_results(*runs)
    headline = build_table(results, "headline")
    values = [_overall(r, ODD, "auroc")["value"] for r in runs]
    (row,) = [x for x in headline.rows if x[0] == ODD]
    assert row[2] == f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" and row[-1] == "3"
    assert "seeds 100, 101, 102" in headline.caption and "hash100, hash101, hash102" in headline.caption
    # beside the spread: the paired difference to the intensity floor tested over seeds, and the
    # share of the intensity -> resnet18 gap closed, each seed's share (m - floor) / (ceiling - floor)
    delta, p_holm, share = (headline.header.index(c) for c in (
        "Δ AUROC vs intensity (mean ± sd)", "p (Wilcoxon, Holm)", "Share of intensity→resnet18 gap [95% CI]"))
    floor = [_overall(r, "intensity", "auroc")["value"] for r in runs]
    ceiling = [_overall(r, "resnet18", "auroc")["value"] for r in runs]
    diffs = [v - f for v, f in zip(values, floor)]
    shares = [(v - f) / (c - f) for v, f, c in zip(values, floor, ceiling)]
    assert row[delta] == f"{statistics.fmean(diffs):.3f} ± {statistics.stdev(diffs):.3f}"
    assert row[p_holm] not in ("", "—") and row[share].startswith(f"{statistics.fmean(shares):.2f} [")
    (floor_row,) = [x for x in headline.rows if x[0] == "intensity"]
    assert floor_row[delta] == "—" and floor_row[share].startswith("0.00")
    seeds = build_table(results, "seeds")
    assert seeds.header[-3:] == ("Seed 100", "Seed 101", "Seed 102")
    (row,) = [x for x in seeds.rows if x[:2] == (ODD, "AUROC")]
    assert row[-3:] == tuple(f"{v:.3f}" for v in values)
    paired = build_table(results, "paired")
    assert paired.header[4:] == ("Same sign", "p (Wilcoxon)", "p (Holm)", "p (t)")
    (row,) = [x for x in paired.rows if x[:3] == (ODD, "intensity", "Δ AUROC")]
    diffs = [_overall(r, ODD, "auroc")["value"] - _overall(r, "intensity", "auroc")["value"] for r in runs]
    assert row[3] == f"{statistics.fmean(diffs):.3f} ± {statistics.stdev(diffs):.3f}" and row[4] == "3/3"
    assert {x[0] for x in paired.rows} == {"resnet18", "cyclegan", ODD, "intensity"}  # a floor is never a method
    # localisation has no per-run pairing, but each seed's two values share a split: tested over seeds
    (row,) = [x for x in paired.rows if x[:3] == (ODD, "intensity", "Δ Pixel AUROC")]
    diffs = [_overall(r, ODD, "pixel_auroc")["value"] - _overall(r, "intensity", "pixel_auroc")["value"] for r in runs]
    assert row[3] == f"{statistics.fmean(diffs):.3f} ± {statistics.stdev(diffs):.3f}" and row[6] not in ("", "—")
    latex = export_text([str(r) for r in runs], "seeds", "latex")
    columns, lines = _tabular(latex)
    assert all(_unescaped(ln, "&") == columns - 1 for ln in lines) and r"$\pm$" in latex


def test_cli_export_writes_a_file_and_refuses_bad_input_with_one_line(run, tmp_path, capsys):
    out = tmp_path / "paper" / "headline.tex"
    assert main(["export", str(run), "--format", "latex", "--table", "headline", "--out", str(out)]) == 0
    assert out.read_text() == export_text([str(run)], "headline", "latex")
    capsys.readouterr()
    for argv in (["export", str(tmp_path)], ["export", str(tmp_path / "nothing")],
                 ["export", str(run), "--table", "nonsense"], ["export", str(run), "--format", "docx"],
                 ["export", str(run), "--table", "seeds"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)


def test_runs_that_differ_in_more_than_their_seed_are_refused(tmp_path):
    a = finished_run(tmp_path / "runs", "run_a", seed=100)
    b = finished_run(tmp_path / "runs", "run_b", seed=101)
    info = json.loads((b / "run.json").read_text())
    info["config"]["profile"] = {"name": "quick"}
    (b / "run.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="differ in more than their seed"):
        build_table(harness.load_results(a, b), "headline")


def test_latex_escape_covers_every_special_character():
    assert latex_escape("a_b & 50% $x #1 {y} ~z ^w \\") == \
        r"a\_b \& 50\% \$x \#1 \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}"
    assert latex_escape("0.1 ± 0.2 [-0.3, 0.4] < 0.001 — 2026-01") == \
        r"0.1 $\pm$ 0.2 [$-$0.3, 0.4] \textless{} 0.001 --- 2026-01"


def test_forest_plot_is_also_written_as_vector_pdf_and_svg(tmp_path):
    rows = [Interval("resnet18", 0.8, 0.7, 0.9), Interval("my_method", 0.6, 0.5, 0.7)]
    png = forest_plot(rows, [Interval("resnet18 − intensity", 0.1, 0.0, 0.2)], tmp_path / "forest.png")
    pdf, svg = png.with_suffix(".pdf"), png.with_suffix(".svg")
    assert pdf.read_bytes().startswith(b"%PDF") and b"<svg" in svg.read_bytes()
    first = (pdf.read_bytes(), svg.read_bytes())
    forest_plot(rows, [Interval("resnet18 − intensity", 0.1, 0.0, 0.2)], tmp_path / "forest.png")
    assert (pdf.read_bytes(), svg.read_bytes()) == first  # no dates or random ids: a re-render is the same file


def test_the_api_and_export_import_no_ml_stack(run):
    """The docs site documents these modules from an env without torch (tox -e docs), and a
    notebook that only reads results should not pay for it: importing them, and loading one
    run, imports neither torch nor scipy."""
    code = ("import sys, harness\n"
            "import harness.benchmark, harness.results_frames, harness.paper_tables, harness.table_formats, "
            "harness.export\n"
            f"harness.load_results({str(run)!r}).table('paired')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'sklearn', 'scipy'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).parents[1], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
