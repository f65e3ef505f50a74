"""`make figures`: regenerate results/figures/*.png from the stored rows (and the models, for the panels).

- macs_vs_edit.png: MACs of one forward vs edited area per model (dense line, sparse curves), from the
  synthetic-edit rows of results/efficiency.csv;
- speedup_vs_macs.png: measured speedup vs MAC reduction per model (ideal: on the diagonal);
- throughput_by_batch.png: images/s and memory against batch size, dense vs sparse (results/throughput.csv);
- panel_<name>.png: original, edited, dense output, sparse output, |difference| heat map and the active tiles
  overlaid, for every case of configs/figures.yaml (one generic panel maker for every model family).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sigebench.config import plain  # noqa: E402
from sigebench.family import load_family  # noqa: E402
from sigebench.jobs import compose_job, hydra_context, load_jobs  # noqa: E402
from sigebench.provenance import ROOT  # noqa: E402
from sigebench.results import ResultsStore  # noqa: E402
from sigebench.table import latest, read_published  # noqa: E402
from sigebench.variants import panel_outputs  # noqa: E402


def latest_rows(csv_path: Path) -> list[dict[str, Any]]:
    return latest(ResultsStore(csv_path).frame()).to_dict("records")


def published_points(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``published model name -> [(edited %, sparse GMACs)]`` of the published figures with an edit size."""
    if not path.exists():
        return {}
    pub = read_published(path)
    pub = pub[(pub["edit"] != "") & (pub["macs_g"] != "") & pub["variant"].str.endswith("sige")]
    pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in pub.to_dict("records"):
        pts[p["model"]].append((float(p["edit"]) * 100, float(p["macs_g"])))
    return pts


def published_links() -> dict[tuple[str, str], str]:
    """``(model name, component) -> published model name``, from the reproduce jobs' ``published`` links (the
    links results/TABLE.md uses)."""
    from sigebench.reproduce import published_links as links

    return {key[:2]: spec["model"] for key, spec in links(load_jobs("reproduce")).items()}


def macs_vs_edit(rows: list[dict[str, str]], out: Path, published: Path | None = None) -> Path | None:
    """Per model: the dense line, sparse curves over the synthetic edits, the example edits as stars and the
    paper's published sparse figures as crosses."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        kind = "synthetic" if r["edit"].startswith("synthetic@") else "example"
        x, y = float(r["edited_fraction"]) * 100, float(r["macs"]) / 1e9
        series[f"{r['model']}/{r['component']}"][
            r["variant"] if kind == "synthetic" else f"example:{r['variant']}"
        ].append((x, y))
    if not series:
        return None
    paper = published_points(published) if published else {}
    links = published_links() if paper else {}
    n = len(series)
    cols = min(n, 4)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.4 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    colors = {"sige": "C0", "sige_fast": "C1"}
    for ax, (name, by_variant) in zip(axes.flat, sorted(series.items())):
        # the dense count does not depend on the edit: one line from any dense row
        dense = [by_variant.pop(k) for k in ("original", "example:original") if k in by_variant]
        if dense:
            ax.axhline(dense[0][0][1], color="k", linestyle="--", label="dense")
        for variant, pts in sorted(by_variant.items()):
            pts.sort()
            xs, ys = zip(*pts)
            base = variant.split(":")[-1]
            if variant.startswith("example:"):
                ax.scatter(xs, ys, marker="*", s=90, color=colors.get(base), label=f"{base} (example edits)")
            else:
                ax.plot(xs, ys, marker="o", color=colors.get(base), label=f"{base} (synthetic edits)")
        pub_name = links.get(tuple(name.split("/")))
        if pub_name in paper:
            xs, ys = zip(*paper[pub_name])
            ax.scatter(xs, ys, marker="x", s=50, color="r", label="paper (its own edits)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("edited area (%)")
        ax.set_ylabel("GMACs (one forward)")
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _ok(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and float(v) > 0


def speedup_vs_macs(rows: list[dict[str, str]], out: Path) -> Path | None:
    dense = {
        (r["model"], r["component"], r["edit"], r["device"], r["threads"]): r
        for r in rows
        if r["variant"] == "original"
    }
    pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        base = dense.get((r["model"], r["component"], r["edit"], r["device"], r["threads"]))
        if r["variant"] == "original" or base is None or not _ok(r["latency_ms"]) or not _ok(base["latency_ms"]):
            continue
        ratio = float(base["macs"]) / max(float(r["macs"]), 1.0)
        pts[f"{r['model']}/{r['component']} ({r['variant']})"].append(
            (ratio, float(base["latency_ms"]) / float(r["latency_ms"]))
        )
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(10, 6))
    hi = max(max(x, y) for v in pts.values() for x, y in v) * 1.2
    ax.plot([1, hi], [1, hi], color="gray", linestyle=":", label="speedup = MAC reduction")
    names = sorted({n.rsplit(" (", 1)[0] for n in pts})
    cmap = plt.get_cmap("tab20")
    for name, v in sorted(pts.items()):
        model, variant = name.rsplit(" (", 1)
        xs, ys = zip(*sorted(v))
        fast = variant.startswith("sige_fast")
        color = cmap(names.index(model) % 20)
        ax.plot(
            xs, ys, marker="s" if fast else "o", linestyle="--" if fast else "-", color=color, label=name, alpha=0.8
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MAC reduction (dense / sparse)")
    ax.set_ylabel("measured speedup (dense / sparse latency)")
    ax.set_title(
        "one colour per model/component; solid: sige, dashed: sige_fast (random weights, this CPU)", fontsize=9
    )
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def throughput_by_batch(csv_path: Path, out: Path) -> Path | None:
    """Images per second (solid) and peak memory + caches (dashed, right axis) against batch size, dense and
    sparse, one panel per model/component/edit of ``results/throughput.csv``."""
    from sigebench.throughput import latest_throughput

    frame = latest_throughput(ResultsStore(csv_path).frame())
    if frame.empty:
        return None
    cases = list(frame.groupby(["model", "component", "edit", "edits", "dtype"], sort=True))
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
    for ax, (key, g) in zip(axes[0], cases):
        mem = ax.twinx()
        for i, (variant, v) in enumerate(g.groupby("variant", sort=True)):
            v = v.sort_values("batch")
            color = f"C{i}"
            ax.plot(v["batch"], v["images_per_s"], marker="o", color=color, label=f"{variant} images/s")
            used = v["peak_mem_mb"].fillna(0) + v["cache_mb"].fillna(0)
            mem.plot(v["batch"], used, linestyle="--", color=color, alpha=0.6, label=f"{variant} MiB")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images per second")
        mem.set_ylabel("peak tensor memory + caches (MiB)")
        ax.set_title(f"{key[0]}/{key[1]} {key[2]} ({key[3]} edits, {key[4]})", fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
        mem.legend(fontsize=6, loc="lower right")
    fig.suptitle("throughput by batch size (random weights, this CPU)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _show(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    lo, hi = np.percentile(x, 1), np.percentile(x, 99)
    return np.clip((x - lo) / max(hi - lo, 1e-8), 0, 1)


def draw_panel(p: dict, out: Path) -> Path:
    diff = np.abs(np.asarray(p["sparse"], np.float32) - np.asarray(p["dense"], np.float32))
    if diff.ndim == 3:
        diff = diff.max(axis=0 if diff.shape[0] in (1, 3) else -1)
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    titles = ["original", "edited (mask outlined)", "dense output", "sparse output", "|sparse - dense|", "active tiles"]
    images = [_show(p["original"]), _show(p["edited"]), _show(p["dense"]), _show(p["sparse"])]
    for ax, img, t in zip(axes, images, titles):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(t, fontsize=9)
    axes[1].contour(np.asarray(p["mask"], bool), levels=[0.5], colors="r", linewidths=0.6)
    im = axes[4].imshow(diff, cmap="magma")
    axes[4].set_title(f"{titles[4]} (max {diff.max():.1e})", fontsize=9)
    fig.colorbar(im, ax=axes[4], fraction=0.046)
    axes[5].imshow(images[3], cmap="gray" if images[3].ndim == 2 else None)
    axes[5].imshow(
        np.ma.masked_where(~np.asarray(p["blocks"], bool), np.asarray(p["blocks"], float)), cmap="autumn", alpha=0.45
    )
    axes[5].set_title(titles[5], fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(p["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def panel(overrides: list[str]) -> dict[str, Any]:
    """The images of one qualitative panel: the case the family prepares (CPU, float32, random weights unless
    the overrides give ``weights``), its dense and sparse outputs and the active tiles."""
    cfg = plain(compose_job(overrides))
    family = load_family(cfg["model"]["family"], cfg["families"])
    component = cfg.get("component") or family.COMPONENTS[0]
    case = family.prepare(cfg["model"], cfg["edit"], component, "cpu", torch.float32, cfg.get("weights"))
    d = case.display
    out = panel_outputs(case.model, case.original, case.edited, case.masks, d.size)
    weights = "random weights" if case.weights == "random" else case.weights
    return {
        "title": f"{cfg['model']['name']} {component}: {cfg['edit']['name']} ({case.edited_fraction:.2%} edited; "
        f"{weights})",
        "original": d.original,
        "edited": d.edited,
        "dense": d.output(out["dense"]),
        "sparse": d.output(out["sparse"]),
        "mask": d.mask,
        "blocks": out["blocks"],
    }


def panels(out_dir: Path, names: list[str] | None) -> list[Path]:
    from hydra import compose

    with hydra_context():
        specs = plain(compose(config_name="figures"))["panels"]
    written = []
    for spec in specs:
        if names and spec["name"] not in names:
            continue
        try:
            p = panel(list(spec["overrides"]))
        except Exception as e:  # one model without its data must not stop the other figures
            print(f"skipped panel {spec['name']}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        written.append(draw_panel(p, out_dir / f"panel_{spec['name']}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--efficiency", default=str(ROOT / "results" / "efficiency.csv"))
    parser.add_argument("--throughput", default=str(ROOT / "results" / "throughput.csv"))
    parser.add_argument("--out", default=str(ROOT / "results" / "figures"))
    parser.add_argument("--published", default=str(ROOT / "results" / "published_numbers.csv"))
    parser.add_argument("--panels", nargs="*", help="panels of configs/figures.yaml to draw (default: all)")
    parser.add_argument("--no-panels", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = latest_rows(Path(args.efficiency))
    written = [
        macs_vs_edit(rows, out / "macs_vs_edit.png", Path(args.published)),
        speedup_vs_macs(rows, out / "speedup_vs_macs.png"),
        throughput_by_batch(Path(args.throughput), out / "throughput_by_batch.png"),
    ]
    if not args.no_panels:
        written += panels(out, args.panels)
    for w in written:
        if w is not None:
            print(f"wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
