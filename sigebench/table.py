"""results/TABLE.md: every measured row beside the published figure of the same case (pandas)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

# Published variant names per measured variant (GAN Compression's dense model is published as "gan_compression").
VARIANT_ALIASES = {"original": ("original", "gan_compression"), "sige": ("sige", "gan_compression+sige")}
PAPER_DEVICES = {"rtx3090": "RTX 3090", "m1pro_gpu": "M1 Pro GPU", "m1pro_cpu": "M1 Pro CPU", "a100": "A100"}
GROUP = ["model", "component", "edit", "device", "threads", "dtype"]
KEY = [*GROUP[:3], "variant", *GROUP[3:]]


def read_published(path: str | os.PathLike[str]) -> pd.DataFrame:
    """results/published_numbers.csv (``#`` lines are comments), every column as text."""
    return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)


def latest(rows: pd.DataFrame) -> pd.DataFrame:
    """The newest row of every (model, component, edit, variant, device, threads, dtype)."""
    if rows.empty:
        return rows
    for col in KEY:
        if col not in rows:
            rows[col] = None
    df = rows.copy()
    df[KEY] = df[KEY].astype(str)
    return df.sort_values("timestamp", kind="stable").drop_duplicates(KEY, keep="last").sort_values(KEY)


def _decimals(s: str) -> int:
    return len(s.split(".")[1]) if "." in s else 0


def _same_size(pub: pd.DataFrame, area: float, tolerance: float = 0.1) -> pd.DataFrame:
    """Published rows whose edited fraction is within ``tolerance`` (relative) of a synthetic edit's area."""
    edits = pd.to_numeric(pub["edit"], errors="coerce")
    return pub[edits.notna() & ((edits - area).abs() <= tolerance * area)]


def _fmt(ours: float, pub_macs: str) -> str:
    """Our MACs in G: one decimal more than the published figure states, or 4 significant digits."""
    return f"{ours:.{_decimals(pub_macs) + 1}f}" if pub_macs else f"{ours:.4g}"


def _match(ours: float, pub_macs: str, hit: bool) -> str:
    if not pub_macs:
        return ""
    if hit:
        return "yes"
    unit = 10.0 ** -_decimals(pub_macs)
    return "last digit" if abs(ours - float(pub_macs)) <= unit else "NO"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f  # NaN (a missing value) -> None


def _paper_speedups(pub: pd.DataFrame) -> str:
    parts = []
    for dev, g in pub[pub["latency"] != ""].groupby("device", sort=False):
        lat = dict(zip(g["variant"], g["latency"].astype(float)))
        dense, sparse = (
            lat.get("original") or lat.get("gan_compression"),
            lat.get("sige") or lat.get("gan_compression+sige"),
        )
        if dense and sparse:
            parts.append(f"{PAPER_DEVICES.get(dev, dev)} {dense / sparse:.1f}x")
    return ", ".join(parts)


def _published_rows(published: pd.DataFrame, spec: dict[str, Any] | None) -> pd.DataFrame:
    """The published rows of a job's case, and the dense figures (the same for every case of the model)."""
    if not spec or published.empty:
        return published.iloc[0:0]
    dense = published["variant"].isin(VARIANT_ALIASES["original"])
    mine = published["model"] == spec["model"]
    case = published["case"].isin([spec.get("case", ""), ""]) | dense
    allowed = dense | (not spec.get("dense_only"))
    return published[mine & case & allowed]


def _fidelity_section(rows: pd.DataFrame) -> list[str]:
    """Rows that record both MAC conventions and the sparse-vs-dense PSNR (the SD / SDXL components)."""
    if "psnr_vs_dense_db" not in rows or "macs_with_fused_attention" not in rows:
        return []
    recorded = set(map(tuple, rows.loc[rows["psnr_vs_dense_db"].notna(), GROUP[:3]].to_numpy()))
    in_case = pd.Series([tuple(k) in recorded for k in rows[GROUP[:3]].to_numpy()], index=rows.index)
    picked = rows[in_case & rows["macs_with_fused_attention"].notna()]
    if picked.empty:
        return []
    out = [
        "",
        "## SD 1.4 / SDXL: both MAC conventions and random-weight fidelity",
        "",
        "`paper convention` leaves out fused scaled-dot-product attention, which the profiler of the original work",
        "did not see (the published SDXL figures were counted so); `true count` includes it. SD 1.4 writes every",
        "attention as bmm, so its two counts agree. `PSNR vs dense` compares the sparse output with the dense output",
        "of the same edited input (one UNet step or one VAE pass, random weights; range = the dense output's range).",
        "",
        "| model | component | edit | variant | paper convention (G) | true count (G) | PSNR vs dense (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in picked.to_dict("records"):
        psnr = _num(r.get("psnr_vs_dense_db"))
        shown = f"{psnr:g}" if psnr is not None else ("exact" if r["variant"] != "original" else "")
        out.append(
            f"| {r['model']} | {r['component']} | {r['edit']} | {r['variant']} | {float(r['macs']) / 1e9:.2f} "
            f"| {float(r['macs_with_fused_attention']) / 1e9:.2f} | {shown} |"
        )
    return out


def _dtype_section(rows: pd.DataFrame) -> list[str]:
    """Reduced-precision rows beside the float32 row of the same case: speed and output fidelity."""
    if "dtype" not in rows:
        return []
    low = rows[rows["dtype"].astype(str) != "float32"]
    if low.empty:
        return []
    same = ["model", "component", "edit", "variant", "device", "threads"]
    f32 = {tuple(r[k] for k in same): r for r in rows[rows["dtype"].astype(str) == "float32"].to_dict("records")}
    out = [
        "",
        "## Reduced precision beside float32",
        "",
        "The same case in another dtype (bfloat16 only on CPUs with AVX512-BF16 or AMX). `vs float32` is the",
        "reduced-precision latency against the float32 row of the same variant, machine and threads; `PSNR vs",
        "float32` compares the output with the float32 dense output of the same input (random weights).",
        "",
        "| model | component | edit | variant | dtype | latency (ms) | float32 (ms) | vs float32 "
        "| speedup vs its dense | PSNR vs float32 (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    dense = {tuple(r[k] for k in [*same[:3], "device", "threads", "dtype"]): r for r in low.to_dict("records")
             if r["variant"] == "original"}  # fmt: skip
    for r in low.to_dict("records"):
        ref = f32.get(tuple(r[k] for k in same))
        lat = _num(r.get("latency_ms"))
        ref_lat = _num(ref.get("latency_ms")) if ref else None
        base = dense.get(tuple(r[k] for k in [*same[:3], "device", "threads", "dtype"]))
        base_lat = _num(base.get("latency_ms")) if base else None
        psnr = _num(r.get("psnr_vs_float32_db"))
        vs32 = f"{ref_lat / lat:.2f}x" if lat and ref_lat else ""
        speedup = f"{base_lat / lat:.2f}x" if lat and base_lat else ""
        out.append(
            f"| {r['model']} | {r['component']} | {r['edit']} | {r['variant']} | {r['dtype']} "
            f"| {f'{lat:.2f}' if lat else ''} | {f'{ref_lat:.2f}' if ref_lat else ''} | {vs32} | {speedup} "
            f"| {f'{psnr:g}' if psnr is not None else ''} |"
        )
    return out


HEADER = [
    "# Efficiency: measured here vs published",
    "",
    "Generated by `make reproduce-table` from `results/efficiency.csv` (do not edit by hand). MACs are one",
    "forward of the component; latency is the median over repeats on this machine; speedup = original /",
    "variant latency on this machine. `sige` uses the paper's block grid (its MACs must equal the published",
    "figure where one exists); `sige_fast` is our speed-tuned configuration. Weights are random unless the",
    "`weights` column of the CSV names a checkpoint (MACs and latency do not depend on weights). For synthetic",
    "edits the published figure is the paper's own edit of about that size, which is not public (`other edit`).",
    "Our MACs are shown to one decimal more than the published figure; `last digit` means they round to a",
    "figure one unit away in the published figure's last decimal.",
    "",
    "| model | component | edit | edited | variant | MACs (G) | published (G) | match | MAC ratio "
    "| latency (ms) | speedup | backend | device | paper speedups |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def render_table(
    rows: pd.DataFrame,
    published: pd.DataFrame,
    links: dict[tuple[str, str, str], dict],
    throughput: pd.DataFrame | None = None,
    memory: pd.DataFrame | None = None,
) -> str:
    """TABLE.md from the measured rows, the published figures and each case's link to them
    (``(model, component, edit) -> {"model", "case", "dense_only"}``), and the throughput and memory-check
    rows if any."""
    rows = latest(rows)
    lines = list(HEADER)
    for key, group in rows.groupby(GROUP, sort=True):
        model, comp, edit, dev, threads, dtype = key
        variants = {r["variant"]: r for r in group.to_dict("records")}
        pub = _published_rows(published, links.get((model, comp, edit)))
        base = variants.get("original")
        for variant in ("original", "sige", "sige_fast"):
            r = variants.get(variant)
            if r is None:
                continue
            ours = float(r["macs"]) / 1e9
            match_rows = pub[pub["variant"].isin(VARIANT_ALIASES.get(variant, (variant,)))]
            if variant != "original" and edit.startswith("synthetic@"):  # the paper's edit of about this size
                match_rows = _same_size(match_rows, float(edit.split("@", 1)[1]))
            # the published figure at its own precision; several rows (rounded differently) may state it
            hits = [m for m in match_rows["macs_g"] if round(ours, _decimals(m)) == float(m)]
            pub_macs = hits[0] if hits else (match_rows["macs_g"].iloc[0] if len(match_rows) else "")
            match = _match(ours, pub_macs, bool(hits))
            if pub_macs and edit.startswith("synthetic") and variant != "original":  # the paper's edit is not public
                match = "other edit"
            ratio = f"{float(base['macs']) / float(r['macs']):.2f}x" if base is not None and float(r["macs"]) else ""
            lat, base_lat = _num(r.get("latency_ms")), _num(base.get("latency_ms")) if base is not None else None
            speed = f"{base_lat / lat:.2f}x" if lat and base_lat else ""
            same_case = match_rows[match_rows["macs_g"] == pub_macs]
            dense_pub = pub[pub["variant"].isin(VARIANT_ALIASES["original"])]
            paper = _paper_speedups(pd.concat([dense_pub, same_case])) if variant == "sige" else ""
            lines.append(
                f"| {model} | {comp} | {edit} | {float(r['edited_fraction']):.2%} | {variant} | {_fmt(ours, pub_macs)} "
                f"| {pub_macs} | {match} | {ratio} | {f'{lat:.2f}' if lat else ''} | {speed} | {r['backend']} "
                f"| {dev} {dtype} x{threads} | {paper} |"
            )
    lines += _fidelity_section(rows)
    lines += _dtype_section(rows)
    if throughput is not None and not throughput.empty:
        from sigebench.throughput import throughput_section

        lines += throughput_section(throughput)
    if memory is not None and not memory.empty:
        from sigebench.memory import memory_section

        lines += memory_section(memory)
    return "\n".join(lines) + "\n"


def write_table(
    rows: pd.DataFrame,
    published_csv: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    links: Iterable,
    throughput_csv: str | os.PathLike[str] | None = None,
) -> str:
    """Render and write TABLE.md (atomically); returns the text. The throughput rows come from
    ``throughput_csv`` (default: ``throughput.csv`` beside the table, when its shards exist), the memory-check
    rows from ``memory.csv`` beside the table."""
    from sigebench.results import ResultsStore

    tp_csv = Path(throughput_csv) if throughput_csv else Path(out_md).with_name("throughput.csv")
    throughput = ResultsStore(tp_csv).frame()
    memory = ResultsStore(Path(out_md).with_name("memory.csv")).frame()
    published = (
        read_published(published_csv)
        if Path(published_csv).exists()
        else pd.DataFrame(columns=["model", "setting", "edit", "case", "variant", "macs_g", "device", "latency"])
    )
    text = render_table(rows, published, dict(links), throughput, memory)
    out = Path(out_md)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return text
