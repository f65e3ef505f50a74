"""The reproduction harness on the engine example: sweep rows, resume, TABLE.md, figures, quality preflight."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sigebench import figures, reproduce, reproduce_quality
from sigebench.results import ResultsStore
from sigebench.table import write_table

ROOT = Path(__file__).resolve().parents[2]
FAST = ["timing.warmup=0", "timing.repeats=1", "variants=[original,sige]"]


@pytest.fixture
def jobs_file(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "jobs:\n"
        "  - overrides: [model=engine_conv, edit=engine_example]\n"
        "    published: {model: engine_example_conv, case: engine/mask.npy}\n"
        "    quick: true\n"
        "  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.012]\n"
    )
    return path


def test_reproduce_table_writes_rows_resumes_and_sets_published_beside(tmp_path, jobs_file, capsys):
    csv_path, table = tmp_path / "eff.csv", tmp_path / "TABLE.md"
    args = ["--jobs", str(jobs_file), "--output", str(csv_path), "--table", str(table), *FAST]
    assert reproduce.main(args) == 0
    rows = ResultsStore(csv_path).rows()
    assert {(r["edit"], r["variant"]) for r in rows} == {
        ("engine_example", "original"), ("engine_example", "sige"),
        ("synthetic@0.012", "original"), ("synthetic@0.012", "sige"),
    }  # fmt: skip
    by = {(r["edit"], r["variant"]): r for r in rows}
    assert by[("engine_example", "sige")]["macs"] == 783 * 16 * 16 * 32 * 9  # the paper's 57.73 M
    assert all(r["weights"] == "random" and r["settings_key"] and r["code_version"] for r in rows)
    assert len(pd.read_csv(csv_path)) == 4  # the derived CSV
    text = table.read_text()
    assert "| engine_example_conv | conv | engine_example | 15.45% | sige | 0.057729 | 0.05773 | yes |" in text
    assert "| engine_example_conv | conv | engine_example | 15.45% | original | 0.301990 | 0.30199 | yes |" in text

    capsys.readouterr()
    assert reproduce.main(args) == 0  # second run: same settings, code and machine -> rows reused
    out = capsys.readouterr().out
    reused = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(reused) == 4 and all(r["reused"] for r in reused)
    assert all(isinstance(r["macs"], int) and isinstance(r["latency_ms"], float) for r in reused)  # numbers
    assert len(ResultsStore(csv_path).rows()) == 4

    assert reproduce.main([*args[:-3], "--force", *FAST, "--quick"]) == 0  # FORCE re-measures (quick subset only)
    assert len(ResultsStore(csv_path).rows()) == 6


def _row(model, component, edit, variant, macs, **extra):
    base = dict(model=model, component=component, edit=edit, variant=variant, macs=macs, latency_ms=None,
                edited_fraction=0.02, device="cpu", threads=2, dtype="float32", backend="native",
                timestamp="2026-01-01T00:00:00")  # fmt: skip
    return {**base, **extra}


def test_table_labels_matches_dense_only_links_and_fidelity(tmp_path):
    pub, out = tmp_path / "pub.csv", tmp_path / "TABLE.md"
    m = "engine_example_conv"
    rows = pd.DataFrame.from_records([
        _row(m, "conv", "ex", "original", 3015_814_700_000, macs_with_fused_attention=3219_870_000_000),
        _row(m, "conv", "ex", "sige", 985_258_800_000, macs_with_fused_attention=1041_830_000_000,
             psnr_vs_dense_db=41.5),
        _row(m, "conv", "ex2", "original", 1854_820_000_000),
        _row(m, "conv", "ex2", "sige", 100_000_000_000),
        _row(m, "conv", "ex3", "sige", 590_000_000_000),
        _row(m, "conv", "synthetic@0.1", "sige", 650_000_000_000),
    ])  # fmt: skip
    pub.write_text(
        "# comment\nmodel,setting,edit,case,variant,macs_g,device,latency,latency_unit,quality_metric,quality\n"
        "pm,x,,c0,original,3015.82,a100,320,ms,,\n"
        "pm,x,0.1,c0,sige,985.25,a100,118,ms,,\n"
        "pm,x,0.1,c3,sige,592.03,a100,112,ms,,\n"
        "pm,x,0.3,,sige,800.5,a100,160,ms,,\n"
        "pm,x,0.1,,sige,700.5,a100,100,ms,,\n"
    )
    links = {
        (m, "conv", "ex"): {"model": "pm", "case": "c0"},
        (m, "conv", "ex2"): {"model": "pm", "case": "", "dense_only": True},
        (m, "conv", "ex3"): {"model": "pm", "case": "c3"},
        (m, "conv", "synthetic@0.1"): {"model": "pm", "case": ""},
    }
    text = write_table(rows, pub, out, links.items())
    # a synthetic edit sits beside the paper's edit of the same size, with that edit's published speedup
    assert "| synthetic@0.1 | 2.00% | sige | 650.00 | 700.5 | other edit |" in text and "A100 3.2x |" in text
    lines = {
        tuple(c.strip() for c in line.split("|")[3:9])
        for line in text.splitlines()
        if line.startswith("| engine_example_conv |")
    }
    # one unit off in the published last digit is labelled so, never "yes"
    assert ("ex", "2.00%", "original", "3015.815", "3015.82", "last digit") in lines
    assert ("ex", "2.00%", "sige", "985.259", "985.25", "last digit") in lines
    # the dense figure of any case applies; a dense-only link shows no sparse figure
    assert ("ex2", "2.00%", "original", "1854.820", "3015.82", "NO") in lines
    assert ("ex2", "2.00%", "sige", "100", "", "") in lines
    assert ("ex3", "2.00%", "sige", "590.000", "592.03", "NO") in lines
    assert "| engine_example_conv | conv | ex | sige | 985.26 | 1041.83 | 41.5 |" in text  # both conventions, PSNR


def run_py(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)  # fmt: skip


def test_run_py_sweep_on_the_basic_and_joblib_launchers(tmp_path):
    out = tmp_path / "sweep.csv"
    base = ["-m", "task=efficiency", "model=engine_conv", "edit=synthetic", "edit.area=0.005,0.05", f"output={out}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}", *FAST]  # fmt: skip
    assert run_py(*base, cwd=tmp_path).returncode == 0
    assert run_py(*base, "hydra/launcher=joblib_local", "force=true", cwd=tmp_path).returncode == 0
    rows = sorted(ResultsStore(out).rows(), key=lambda r: r["timestamp"])
    assert len(rows) == 8 and len(pd.read_csv(out)) == 8
    assert {r["edit"] for r in rows} == {"synthetic@0.005", "synthetic@0.05"}
    cores = os.cpu_count() or 1
    expected = max(1, cores // 2)  # threads=auto: the 2 parallel jobs split the cores
    assert {r["threads"] for r in rows[4:]} == {expected}
    small, large = sorted(r["macs"] for r in rows[:4] if r["variant"] == "sige")
    assert small < large


def test_run_py_prints_one_json_object_per_variant(tmp_path):
    res = run_py("task=efficiency", "model=engine_conv", "edit=synthetic", f"output={tmp_path / 'one.csv'}",
                 f"hydra.run.dir={tmp_path / 'run'}", *FAST, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["variant"] for r in lines] == ["original", "sige"]
    keys = ("model", "component", "edit", "macs", "latency_ms", "latency_ms_min", "latency_ms_max", "peak_mem_mb",
            "edited_fraction", "active_fraction", "threads", "device", "dtype", "weights")  # fmt: skip
    assert all(key in lines[0] for key in keys)
    assert list(lines[0])[:4] == ["model", "component", "edit", "variant"]


def test_figures_render(tmp_path, jobs_file):
    csv_path = tmp_path / "eff.csv"
    assert reproduce.main(["--jobs", str(jobs_file), "--output", str(csv_path), "--table", str(tmp_path / "T.md"),
                           *FAST]) == 0  # fmt: skip
    assert figures.main(["--efficiency", str(csv_path), "--out", str(tmp_path / "fig"), "--panels", "engine_conv"]) == 0
    for name in ("macs_vs_edit.png", "speedup_vs_macs.png", "panel_engine_conv.png"):
        png = tmp_path / "fig" / name
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_reproduce_quality_lists_missing_files_in_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "empty-mirror"))  # nothing to fetch, no network
    (tmp_path / "empty-mirror").mkdir()
    jobs = tmp_path / "quality.yaml"
    jobs.write_text("jobs:\n  - overrides: [model=ddpm_church256, edit=church_sdedit, weights=pretrained]\n")
    assert reproduce_quality.main(["--jobs", str(jobs)]) == 1
    err = capsys.readouterr().err
    assert "needed before the remaining quality jobs can run" in err
    assert "church256-ddpm-fused_unet.pth" in err and "model=ddpm_church256 edit=church_sdedit" in err
    assert "1 waiting for files" in err


@pytest.mark.parametrize("kind", ["reproduce", "quality"])
def test_every_job_of_the_job_lists_composes_and_validates(kind, monkeypatch):
    """The job lists are Hydra configs; every job is a valid model / edit pair with known settings."""
    from sigebench.config import plain, validate
    from sigebench.jobs import compose_job, load_jobs

    # whatever this CPU has: the bfloat16 jobs must validate where bfloat16 is native
    monkeypatch.setattr("sigebench.provenance.cpu_features", lambda: "avx2 avx512f avx512_bf16")

    jobs = load_jobs(kind)
    assert len(jobs) >= (40 if kind == "reproduce" else 4)
    for job in jobs:
        overrides = ["task=quality", *job["overrides"]] if kind == "quality" else job["overrides"]
        validate(plain(compose_job(overrides)))
    if kind == "reproduce":
        assert any(j.get("quick") for j in jobs) and any(j.get("published") for j in jobs)
