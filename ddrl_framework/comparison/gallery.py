"""The report's sections for real backbones, beside its tables (called from ``report.py``):

* every evaluation metric of every setting at the last evaluation, with its change since the
  first (mean ± sd over seeds): the hacking diagnostics (image statistics, held-out rewards,
  feature-space FD and diversity) sit here next to the trained reward;
* a gallery: the reference's samples and each arm's final samples, from the same held-out
  prompts and noise (the runs' ``samples_start.png`` / ``samples_final.png``, one row each in
  ``gallery.png``), and the animated GIFs of videos, so that a hacked arm is visible at a glance.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Collection
from pathlib import Path

from PIL import Image, ImageDraw

from ddrl_framework.kit.io import atomic_write_bytes

SKIPPED = {"iteration", "seconds"}
LABEL_WIDTH = 160


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4g} ± {sd:.2g}" if len(values) > 1 else f"{mean:.4g}"


def metrics_section(settings: dict[str, list[dict]], summarized: Collection[str] = ()) -> list[str]:
    """One row per metric, one column per setting: the last evaluation's value and its change
    (``summarized``: keys another key sums up, left out)."""
    keys = sorted({k for runs in settings.values() for run in runs for k in run["eval"][-1]} - SKIPPED
                  - set(summarized))
    if not keys:
        return []
    labels = list(settings)
    lines = ["## Every evaluation metric", "",
             "At the last evaluation (Δ: the change since the first, the reference's own value); mean ± sd "
             "over seeds. docs/comparisons.md says what each metric detects and misses.", "",
             "| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key in keys:
        cells = []
        for label in labels:
            runs = settings[label]
            last = [r["eval"][-1][key] for r in runs if r["eval"][-1].get(key) is not None]
            change = [r["eval"][-1][key] - r["eval"][0][key] for r in runs
                      if r["eval"][-1].get(key) is not None and r["eval"][0].get(key) is not None]
            cells.append(f"{_cell(last)} (Δ {_cell(change)})" if last else "-")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines + [""]


def _labelled(image: Image.Image, label: str) -> Image.Image:
    row = Image.new("RGB", (LABEL_WIDTH + image.width, max(image.height, 14)), "white")
    row.paste(image.convert("RGB"), (LABEL_WIDTH, 0))
    # PIL's built-in bitmap font has no Greek letters: "β" would be drawn as an empty box
    ImageDraw.Draw(row).text((4, 4), label.replace("β", "beta"), fill="black")
    return row


def _stack(rows: list[Image.Image]) -> bytes:
    width = max(r.width for r in rows)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows) + 4 * len(rows)), "white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height + 4
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _gallery_entries(folder: Path, settings: dict[str, list[dict]]) -> list[tuple[str, Path]]:
    """(label, grid) of the reference before training, then each setting's final samples."""
    first = next(iter(settings.values()))[0]
    entries = [("reference (start)", folder / first["dir"] / "samples_start.png")]
    entries += [(label, folder / runs[0]["dir"] / "samples_final.png") for label, runs in settings.items()]
    return [(label, path) for label, path in entries if path.is_file()]


def write_gallery(folder: Path, settings: dict[str, list[dict]]) -> None:
    """``gallery.png``: the reference, then each setting's final samples, same prompts and noise."""
    present = _gallery_entries(folder, settings)
    if present:
        rows = []
        for label, path in present:
            with Image.open(path) as image:
                rows.append(_labelled(image, label))
        atomic_write_bytes(folder / "gallery.png", _stack(rows))


def gallery_section(folder: Path, settings: dict[str, list[dict]]) -> list[str]:
    """The lines that show ``gallery.png`` (:func:`write_gallery`), and link each setting's GIF
    when the samples are videos."""
    present = _gallery_entries(folder, settings)
    if not present:
        return []
    lines = ["## Gallery", "", "The same held-out prompts and noise in every row: the reference before "
             "training, then each setting's final samples (first seed).", "", "![gallery](gallery.png)", ""]
    gifs = [(label, path.with_suffix(".gif")) for label, path in present if path.with_suffix(".gif").is_file()]
    if gifs:
        lines += ["| " + " | ".join(label for label, _ in gifs) + " |", "|" + "---|" * len(gifs),
                  "| " + " | ".join(f"![{label}]({gif.relative_to(folder)})" for label, gif in gifs) + " |", ""]
    return lines


def extra_sections(folder: Path, settings: dict[str, list[dict]], summarized: Collection[str] = ()) -> list[str]:
    """Every section this module adds to ``report.md``."""
    return metrics_section(settings, summarized) + gallery_section(folder, settings)


