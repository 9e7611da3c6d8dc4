"""Result presentation: printed tables, JSON files and a VPQ-versus-window plot."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vipdl.formats import atomic_write_bytes, atomic_write_json


def _f(x: float | None, width: int = 6) -> str:
    return f"{'n/a':>{width}}" if x is None else f"{x:{width}.2f}"


def vpq_table(
    per_k: Mapping[str, Mapping[str, Any]],
    *,
    prefix: str = "VPQ",
    class_names: Sequence[str] | None = None,
    per_class: bool = False,
) -> str:
    """Markdown-style table of a `VpqResult.summary(prefix)["per_k"]` (percentages)."""
    lines = [
        f"| k | {prefix} | {prefix}_th | {prefix}_st | SQ | RQ | classes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in per_k.items():
        lines.append(
            f"| {k} | {_f(r[prefix])} | {_f(r[f'{prefix}_th'])} | {_f(r[f'{prefix}_st'])} | "
            f"{_f(r['SQ'])} | {_f(r['RQ'])} | {r['num_classes']} |"
        )
    if per_class:
        for k, r in per_k.items():
            lines += ["", f"k = {k}", "| class | PQ | SQ | RQ | IoU sum | TP | FP | FN |"]
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for c, s in r["per_class"].items():
                name = class_names[int(c)] if class_names and int(c) < len(class_names) else c
                lines.append(
                    f"| {name} | {_f(s['pq'])} | {_f(s['sq'])} | {_f(s['rq'])} | "
                    f"{s['iou']:.4f} | {s['tp']} | {s['fp']} | {s['fn']} |"
                )
    return "\n".join(lines)


def vpq_report(summary: Mapping[str, Any], *, prefix: str = "VPQ", **kwargs) -> str:
    """Per-k table followed by the mean over k."""
    table = vpq_table(summary["per_k"], prefix=prefix, **kwargs)
    mean = (
        f"{prefix} = {_f(summary[prefix], 0)}  {prefix}_th = {_f(summary[f'{prefix}_th'], 0)}  "
        f"{prefix}_st = {_f(summary[f'{prefix}_st'], 0)}  (mean over k)"
    )
    return f"{table}\n\n{mean}"


def dvpq_report(summary: Mapping[str, Any], **kwargs) -> str:
    parts = []
    for thr, per_k in summary["runs"].items():
        title = "plain VPQ" if float(thr) == 0 else f"depth threshold {thr}"
        parts += [f"### {title}", vpq_table(per_k, prefix="DVPQ", **kwargs), ""]
    parts.append(
        f"DVPQ = {_f(summary['DVPQ'], 0)}  DVPQ_th = {_f(summary['DVPQ_th'], 0)}  "
        f"DVPQ_st = {_f(summary['DVPQ_st'], 0)}  (mean over k and thresholds > 0)"
    )
    if "VPQ" in summary:
        parts.append(f"VPQ = {_f(summary['VPQ'], 0)}  (threshold 0, mean over k)")
    if summary.get("abs_rel") is not None:
        parts.append(f"AbsRel = {summary['abs_rel']:.6f}")
    return "\n".join(parts)


def stq_report(summary: Mapping[str, Any]) -> str:
    def pct(x):
        return None if x is None else 100.0 * x

    lines = ["| sequence | frames | tracks | STQ | AQ | SQ |", "|---|---:|---:|---:|---:|---:|"]
    for seq, r in summary["per_seq"].items():
        lines.append(
            f"| {seq} | {r['num_frames']} | {r['num_tracks']} | {_f(pct(r['STQ']))} | "
            f"{_f(pct(r['AQ']))} | {_f(pct(r['SQ']))} |"
        )
    lines.append(
        f"| **all** | {sum(r['num_frames'] for r in summary['per_seq'].values())} | "
        f"{summary['num_tracks']} | {_f(pct(summary['STQ']))} | {_f(pct(summary['AQ']))} | "
        f"{_f(pct(summary['SQ']))} |"
    )
    return "\n".join(lines)


def write_json(path: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    """Writes the summary as JSON (atomically); missing scores are null."""
    atomic_write_json(path, summary)


def plot_vpq_vs_window(
    curves: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    keys: Sequence[str] = ("VPQ", "VPQ_th", "VPQ_st"),
    title: str = "VPQ versus window size",
) -> None:
    """Plots score versus k (raw frames spanned by the window) and saves it (PNG/PDF/SVG).

    Args:
      curves: label -> per_k mapping ({k: {key: percentage}}), e.g. {"": summary["per_k"]}
        or one entry per depth threshold.
      path: output file; the format follows the suffix.
      keys: which scores to draw.
      title: plot title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    try:
        for label, per_k in curves.items():
            ks = sorted(int(k) for k in per_k)
            for key in keys:
                ys = [per_k[str(k)].get(key) for k in ks]
                pts = [(k, y) for k, y in zip(ks, ys) if y is not None]
                if pts:
                    name = f"{label} {key}".strip()
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("k (frames spanned by the window)")
        ax.set_ylabel("score (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
        atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)
