"""Statistics of a raw dataset and the problems found in it (behind `vipdl-dataset-stats`).

Reads every annotated frame through its `vipdl.data.layouts.Layout` (the reader the converter
uses, so the same checks run) and reports per split: videos, annotated frames and pairs, frame
sizes, the gaps between annotated frames in raw frames, each class's share of the labelled
pixels, instances (tracks) per thing class and how many annotated frames each track spans.
Problems (what makes `vipdl-prepare-data` refuse) and notes (what it accepts but reports) are
collected, never raised, so one run lists them all.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np
import tqdm

from vipdl.data import custom, layouts


def _track_summary(lengths: Sequence[int]) -> dict[str, float] | None:
    if not lengths:
        return None
    a = np.asarray(lengths)
    return {
        "tracks": int(a.size),
        "min": int(a.min()),
        "median": float(np.median(a)),
        "mean": round(float(a.mean()), 2),
        "max": int(a.max()),
        "single_frame": int((a == 1).sum()),
    }


def _split_stats(layout: layouts.Layout, videos: Sequence[layouts.Video], problems: list[str],
                 notes: list[str], progress: bool) -> dict[str, Any]:
    d = layout.descriptor
    pixels = np.zeros(d.num_classes + 1, np.int64)  # Last bin: void.
    track_frames: dict[tuple[str, int], int] = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    gaps: collections.Counter = collections.Counter()
    frames = 0
    for video in tqdm.tqdm(videos, unit="video", disable=not progress):
        gaps.update(b.token - a.token for a, b in zip(video.frames, video.frames[1:]))
        things_per_frame = []
        for frame in video.frames:
            try:
                image, panoptic, _ = layout.read_frame(frame)
            except layouts.DatasetError as e:
                problems.extend(e.problems)
                continue
            frames += 1
            sizes[f"{image.shape[1]}x{image.shape[0]}"] += 1
            semantic = panoptic // d.label_divisor
            semantic = np.where(semantic == d.ignore_label, d.num_classes, semantic)
            pixels += np.bincount(semantic.ravel(), minlength=d.num_classes + 1)
            values = np.unique(panoptic)
            things = {int(v) for v in values
                      if v % d.label_divisor and d.is_thing(int(v) // d.label_divisor)}
            things_per_frame.append(things)
            for v in things:
                track_frames[(video.sequence_id, v)] += 1
        warning = custom.persistence_warning(video, things_per_frame)
        if warning:
            notes.append(warning)
    labelled = int(pixels[: d.num_classes].sum())
    classes = {}
    for c, name in enumerate(d.class_names):
        lengths = [n for (_, v), n in track_frames.items() if v // d.label_divisor == c]
        classes[name] = {
            "pixel_share": round(float(pixels[c]) / labelled, 6) if labelled else 0.0,
            "instances": len(lengths) if d.is_thing(c) else None,
            "track_frames": _track_summary(lengths) if d.is_thing(c) else None,
        }
    return {
        "videos": len(videos),
        "annotated_frames": frames,
        "pairs": sum(max(len(v.frames) - 1, 0) for v in videos) if d.is_video else 0,
        "frame_sizes": dict(sizes.most_common()),
        "annotation_gaps": {int(k): n for k, n in sorted(gaps.items())},
        "void_share": round(float(pixels[-1]) / max(int(pixels.sum()), 1), 6),
        "classes": classes,
        "tracks": _track_summary(list(track_frames.values())),
    }


def dataset_stats(layout: layouts.Layout, *, splits: Sequence[str] | None = None,
                  max_videos: int = 0, progress: bool = False) -> dict[str, Any]:
    """Statistics and problems of the raw dataset read by `layout`.

    Args:
        layout: e.g. `vipdl.data.custom.make_layout(DIR)` or `builders.make_layout(name, DIR)`.
        splits: the splits to read (default: all the layout finds).
        max_videos: read at most this many videos per split (0 = all).
        progress: show a progress bar per split.

    Returns:
        `{"dataset", "root", "splits": {split: {...}}, "problems": [...], "notes": [...]}`;
        per split `videos`, `annotated_frames`, `pairs`, `frame_sizes` ("WxH" -> frames),
        `annotation_gaps` (raw frames between consecutive annotated frames -> count),
        `void_share`, `classes` (name -> `pixel_share` of the labelled pixels, `instances` and
        `track_frames` summary for things) and `tracks` (all thing tracks).
    """
    problems: list[str] = []
    notes: list[str] = []
    out: dict[str, Any] = {"dataset": layout.descriptor.name, "root": str(layout.root),
                           "splits": {}}
    names = layout.splits() if splits is None else tuple(splits)
    if not names:
        problems.append(f"{layout.root}: no split found ({type(layout).__name__})")
    for split in names:
        try:
            videos = layout.videos(split, expected_frames=-1)
        except layouts.DatasetError as e:
            problems.extend(e.problems)
            continue
        if max_videos:
            videos = videos[:max_videos]
        out["splits"][split] = _split_stats(layout, videos, problems, notes, progress)
    out["problems"] = problems
    out["notes"] = list(dict.fromkeys(layout.warnings + notes))
    return out


def format_stats(stats: dict[str, Any], *, max_listed: int = 40) -> str:
    """A plain-text report of `dataset_stats` output."""
    lines = [f"{stats['dataset']} at {stats['root']}"]
    for split, s in stats["splits"].items():
        sizes = ", ".join(f"{k} ({n})" for k, n in s["frame_sizes"].items()) or "-"
        lines += [
            "",
            f"split {split}: {s['videos']} videos, {s['annotated_frames']} annotated frames, "
            f"{s['pairs']} pairs; frame sizes {sizes}",
        ]
        if s["annotation_gaps"]:
            gaps = ", ".join(f"{k} ({n}x)" for k, n in s["annotation_gaps"].items())
            lines.append(f"  annotated-frame stride (raw frames from one annotated frame to "
                         f"the next): {gaps}")
        lines.append(f"  {'class':<24} {'pixels':>8} {'instances':>10}  track length in "
                     "annotated frames (min / median / max, single-frame tracks)")
        for name, c in s["classes"].items():
            t = c["track_frames"]
            tracks = (f"{t['min']} / {t['median']:g} / {t['max']}, {t['single_frame']}"
                      if t else "")
            instances = "-" if c["instances"] is None else str(c["instances"])
            row = f"  {name:<24} {100 * c['pixel_share']:7.2f}% {instances:>10}  {tracks}"
            lines.append(row.rstrip())
        lines.append(f"  {'(void, of all pixels)':<24} {100 * s['void_share']:7.2f}%")
    for title, items in (("problems", stats["problems"]), ("notes", stats["notes"])):
        lines += ["", f"{title} ({len(items)}):" if items else f"{title}: none"]
        lines += [f"  - {p}" for p in items[:max_listed]]
        if len(items) > max_listed:
            lines.append(f"  ... and {len(items) - max_listed} more (see --json)")
    return "\n".join(lines)
