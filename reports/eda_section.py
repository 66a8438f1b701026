"""The dataset section of a run page, from ``eda/eda.json`` (see ``harness.data.eda``).

Written for a reader, not as a dump: each part is a sentence or two with the numbers rounded,
a small table with human labels, and the figure that illustrates those numbers beside them;
what is missing is said in words. Keys this module does not know (a newer EDA) are still shown,
as tables with humanised labels, so the page never breaks on another EDA version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reports.escape import MyST, escape_text
from reports.tables import is_number, md_table

__all__ = ["eda_sections", "FIGURE_CAPTIONS"]

MAX_ROWS = 50
LABELS = {"tumor": "tumor", "no_tumor": "no tumor"}
# figure stem -> caption (figures a section does not claim go to "Other figures")
FIGURE_CAPTIONS = {
    "class_balance": "Images per label and split",
    "resolution": "Image width and height per label",
    "aspect": "Aspect ratio (width / height) per label",
    "brightness": "Mean brightness per image, per label",
    "intensity_hist": "Pixel intensities per label (a seeded sample of images)",
    "shortcut_audit": "How well each file feature alone separates the labels (AUROC)",
    "input_audit": "How well each feature of the loaded images alone separates the labels (AUROC)",
}
_FEATURES = {"width": "width", "height": "height", "aspect": "aspect ratio", "file_size": "file size",
             "channels": "channels", "mean_brightness": "mean brightness", "format": "file format",
             "mode": "colour mode", "median": "in-brain median", "iqr": "in-brain IQR",
             "brain_area": "brain area", "sharpness": "sharpness", "noise": "noise",
             "axial_position": "axial position"}
_SHOWN_BY = {"counts": {"counts", "dataset"}, "notices": {"notices", "load_failures"},  # section -> its keys
             "resolution": {"resolution", "aspect", "modes", "channels", "formats"},
             "brightness": {"brightness", "intensity"}}
_HANDLED = {"eda_version", "figures", "sample_ids", "labels", "dataset", "counts", "resolution", "aspect", "modes",
            "channels", "formats", "brightness", "intensity", "shortcut_audit", "input_audit", "skipped",
            "duplicates", "masks", "notices", "load_failures"}


def _human(key: object) -> str:
    text = str(key)
    return LABELS.get(text, text.replace("_", " "))


def _num(value: Any, digits: int = 3) -> str:
    """Integers with thousands separators, other numbers to ``digits`` significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if is_number(value):
        return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.{digits}g}"
    return "—" if value is None else str(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if is_number(value) else "—"


def _range(stats: Any) -> str:
    """{min, median, max} -> "64" when constant, else "median (min–max)"."""
    if not isinstance(stats, Mapping):
        return "—"
    low, mid, high = (stats.get(k) for k in ("min", "median", "max"))
    if is_number(low) and low == high:
        return _num(low)
    return f"{_num(mid)} ({_num(low)}–{_num(high)})"


def _per_label_counts(per_label: Any) -> str:
    if not isinstance(per_label, Mapping) or not per_label:
        return ""
    return ", ".join(f"{_num(n)} {_human(label)}" for label, n in per_label.items())


def _figure(figures: dict[str, str], stem: str) -> MyST | None:
    """The figure of ``stem`` (claimed: it will not be repeated under Other figures)."""
    rel = figures.pop(stem, None)
    if rel is None:
        return None
    caption = FIGURE_CAPTIONS.get(stem, _human(stem).capitalize())
    return MyST(f":::{{figure}} {rel}\n:alt: {escape_text(caption)}\n\n{escape_text(caption)}\n:::")


def _beside(text: list[str], figure: MyST | None) -> MyST:
    """Numbers and their figure side by side (stacked on narrow screens, see report.css)."""
    body = "\n\n".join(t for t in text if t)
    if figure is None:
        return MyST(body)
    return MyST(f"::::{{container}} beside\n\n:::{{container}} numbers\n\n{body}\n:::\n\n{figure}\n::::")


def _overview(eda: Mapping[str, Any], figures: dict[str, str]) -> MyST:
    dataset = eda.get("dataset") if isinstance(eda.get("dataset"), Mapping) else {}
    counts = eda.get("counts") if isinstance(eda.get("counts"), Mapping) else {}
    n, skipped = dataset.get("n_images"), dataset.get("n_skipped")
    lead = f"{_num(n)} images" if n is not None else "The images"
    per_label = _per_label_counts(counts.get("per_label"))
    sentence = f"{lead} ({per_label})" if per_label else lead
    name = dataset.get("name")
    sentence += f" from {name}" if name else ""
    sentence += f"; {_num(skipped)} file(s) skipped." if is_number(skipped) and skipped else "; no file skipped."
    parts = [escape_text(sentence)]
    per_split = counts.get("per_split")
    if isinstance(per_split, Mapping) and per_split:
        labels = list(dict.fromkeys(k for row in per_split.values() if isinstance(row, Mapping) for k in row))
        parts.append(md_table(["Split"] + [_human(lb).capitalize() for lb in labels] + ["Tumor share"],
                              [[name] + [_num(row.get(lb)) for lb in labels] + [_share(row)]
                               for name, row in per_split.items() if isinstance(row, Mapping)]))
    given = counts.get("per_given_split")
    if isinstance(given, Mapping) and set(given) - {"none"}:
        parts.append(escape_text("The dataset's own folders name a split: " + "; ".join(
            f"{name}: {_per_label_counts(row)}" for name, row in given.items())) + ". A given test split is kept.")
    elif isinstance(given, Mapping):
        parts.append(MyST("The dataset names no split of its own; the harness made the split above."))
    return _beside(parts, _figure(figures, "class_balance"))


def _share(row: Mapping[str, Any]) -> str:
    total = sum(v for v in row.values() if is_number(v))
    return _pct(row.get("tumor", 0) / total) if total and is_number(row.get("tumor", 0)) else "—"


def _size_and_format(eda: Mapping[str, Any], figures: dict[str, str]) -> MyST:
    res = eda.get("resolution") if isinstance(eda.get("resolution"), Mapping) else {}
    parts: list[str] = []
    common = res.get("most_common")
    if res.get("n_distinct") == 1 and isinstance(common, list) and common and len(common[0]) == 3:
        parts.append(escape_text(f"Every image is {_num(common[0][0])} × {_num(common[0][1])} px."))
    elif is_number(res.get("n_distinct")):
        top = ", ".join(f"{_num(w)} × {_num(h)} ({_num(c)})" for w, h, c in (common or [])[:3]
                        if isinstance(w, (int, float)))
        parts.append(escape_text(f"{_num(res['n_distinct'])} distinct image sizes; the most common: {top}."))
    labels = list(dict.fromkeys(
        lb for key in ("modes", "channels", "formats") if isinstance(eda.get(key), Mapping) for lb in eda[key]))
    per_res = res.get("per_label") if isinstance(res.get("per_label"), Mapping) else {}
    per_aspect = (eda.get("aspect") or {}).get("per_label") if isinstance(eda.get("aspect"), Mapping) else None
    labels += [lb for lb in per_res if lb not in labels]
    rows = []
    for label in labels:
        lres = per_res.get(label) if isinstance(per_res.get(label), Mapping) else {}
        rows.append([_human(label).capitalize(), _range(lres.get("width")), _range(lres.get("height")),
                     _range((per_aspect or {}).get(label)),
                     _values(eda.get("formats"), label), _values(eda.get("modes"), label),
                     _values(eda.get("channels"), label)])
    if rows:
        parts.append(md_table(["Label", "Width (px)", "Height (px)", "Aspect", "Format", "Colour mode", "Channels"],
                              rows))
    figure = _figure(figures, "resolution")
    aspect = _figure(figures, "aspect")
    return MyST(_beside(parts, figure) + (f"\n\n{aspect}" if aspect else ""))


def _values(counts: Any, label: str) -> str:
    """{label: {value: n}} -> "PNG (120), JPEG (3)" for one label."""
    inner = counts.get(label) if isinstance(counts, Mapping) else None
    if not isinstance(inner, Mapping) or not inner:
        return "—"
    if len(inner) == 1:
        return str(next(iter(inner)))
    return ", ".join(f"{v} ({_num(n)})" for v, n in sorted(inner.items(), key=lambda kv: -kv[1] if is_number(kv[1]) else 0))


def _brightness(eda: Mapping[str, Any], figures: dict[str, str]) -> MyST:
    bright = eda.get("brightness") if isinstance(eda.get("brightness"), Mapping) else {}
    inten = eda.get("intensity") if isinstance(eda.get("intensity"), Mapping) else {}
    per_label = inten.get("per_label") if isinstance(inten.get("per_label"), Mapping) else {}
    labels = list(dict.fromkeys([*bright, *per_label]))
    rows = []
    for label in labels:
        b = bright.get(label) if isinstance(bright.get(label), Mapping) else {}
        i = per_label.get(label) if isinstance(per_label.get(label), Mapping) else {}
        mean = f"{_num(b.get('mean'))} ± {_num(b.get('std'))}" if is_number(b.get("mean")) else "—"
        rows.append([_human(label).capitalize(), mean, _num(i.get("p50")), _num(i.get("p99")),
                     _pct(i.get("dark_fraction")), _pct(i.get("bright_fraction")), _num(i.get("n_images"))])
    parts = [MyST("Brightness on a 0–1 scale. Mean brightness is per image (mean ± sd over images); the "
                  "percentiles and the shares of near-black (< 0.02) and near-white (≥ 0.98) pixels come from "
                  "a seeded sample of images. A large near-white share points at white borders or burnt-in text.")]
    if rows:
        parts.append(md_table(["Label", "Mean brightness", "Median pixel", "99th percentile", "Near-black",
                               "Near-white", "Images sampled"], rows))
    figure = _figure(figures, "brightness")
    hist = _figure(figures, "intensity_hist")
    return MyST(_beside(parts, figure) + (f"\n\n{hist}" if hist else ""))


def _audit(audit: Any, figures: dict[str, str], figure_stem: str, what: str) -> MyST:
    """A shortcut audit: per feature, how well it alone separates the labels."""
    if not isinstance(audit, Mapping):
        return MyST(f"Not recorded for this run ({escape_text(what)}).")
    parts: list[str] = []
    threshold = audit.get("threshold")
    flagged = [str(f) for f in audit.get("flagged") or []]
    verdict = audit.get("verdict")
    if flagged:
        names = ", ".join(_FEATURES.get(f, _human(f)) for f in flagged)
        parts.append(MyST(f":::{{warning}}\nFlagged: {escape_text(names)}. A classifier could tell the labels apart "
                          "by these features alone, without looking at anatomy.\n:::"))
    elif verdict:
        parts.append(escape_text(f"{str(verdict)[:1].upper()}{str(verdict)[1:]}."))
    rule = (f"A feature is flagged when its AUROC against the label is at least {_num(threshold, 2)} or at most "
            f"{_num(1 - threshold, 2)}." if is_number(threshold) else "")
    parts.append(escape_text(f"{what} {rule}".strip()))
    rows = []
    for entry in audit.get("features") or []:
        if not isinstance(entry, Mapping):
            continue
        by_label = entry.get("by_label")
        medians = by_label.get("median") if isinstance(by_label, Mapping) else None
        median_text = ", ".join(f"{_human(lb)} {_num(v)}" for lb, v in medians.items()) \
            if isinstance(medians, Mapping) else "—"
        rows.append([_FEATURES.get(str(entry.get("feature")), _human(entry.get("feature"))),
                     f"{entry['auroc']:.2f}" if is_number(entry.get("auroc")) else "—", MyST("**yes**") if entry.get("flagged") else "no", median_text,
                     entry.get("note")])
    if rows:
        parts.append(md_table(["Feature", "AUROC", "Flagged", "Median per label", "Note"], rows))
    return _beside(parts, _figure(figures, figure_stem))


def _masks(masks: Any) -> MyST:
    if not isinstance(masks, Mapping):
        return MyST("Not recorded.")
    n = masks.get("n_with_mask")
    if not n:
        return MyST("No image has a lesion mask, so pixel-level metrics (pixel AUROC, Dice) are not computed.")
    per_label = _per_label_counts(masks.get("per_label"))
    return escape_text(f"{_num(n)} images have a lesion mask ({per_label}).")


def _skipped(skipped: Any) -> MyST:
    if isinstance(skipped, list):  # a bare list of {path, reason} or [path, reason]
        skipped = {"files": [{"path": r[0], "reason": r[1]} if isinstance(r, (list, tuple)) and len(r) == 2 else r
                             for r in skipped]}
    if not isinstance(skipped, Mapping):
        return MyST("Not recorded.")
    files = [f for f in skipped.get("files") or [] if isinstance(f, Mapping)]
    count = skipped.get("count", len(files))
    if not count and not files:
        return MyST("No file was skipped.")
    parts = [escape_text(f"{_num(count)} file(s) were skipped and not used.")]
    by_reason = skipped.get("by_reason")
    if isinstance(by_reason, Mapping) and by_reason:
        parts.append(md_table(["Reason", "Files"], [[r, _num(n)] for r, n in by_reason.items()]))
    if files:
        parts.append(_listing(["File", "Reason"], [[f.get("path"), f.get("reason")] for f in files]))
    return MyST("\n\n".join(parts))


def _listing(header: list[str], rows: list[list[Any]]) -> MyST:
    """A table of at most MAX_ROWS rows, saying how many more eda/eda.json holds."""
    table = md_table(header, rows[:MAX_ROWS])
    if len(rows) > MAX_ROWS:
        return MyST(f"{table}\n\n{len(rows) - MAX_ROWS} more not shown (all are in eda/eda.json).")
    return table


def _duplicates(dups: Any) -> MyST:
    if dups is None:
        return MyST("Not computed: duplicates are found while splitting, and this EDA ran without a split.")
    if not isinstance(dups, Mapping):
        return MyST("Not recorded.")
    n_groups, n_cross = dups.get("n_groups") or 0, dups.get("n_cross_label") or 0
    if not n_groups and not n_cross:
        return MyST("No exact or near-duplicate images across subjects.")
    parts = [escape_text(f"{_num(n_groups)} group(s) of duplicate images (kept together in one split); "
                         f"{_num(n_cross)} cross-label duplicate(s) (the same picture under both labels).")]
    groups = [g for g in dups.get("groups") or [] if isinstance(g, list)]
    if groups:
        parts.append(_listing(["Group", "Images"], [[i + 1, ", ".join(map(str, g))] for i, g in enumerate(groups)]))
    cross = dups.get("cross_label") or []
    if cross:
        parts.append(_listing(["Cross-label", "Images"], [[i + 1, ", ".join(map(str, g)) if isinstance(g, list)
                                                            else g] for i, g in enumerate(cross)]))
    return MyST("\n\n".join(parts))


def _notices(eda: Mapping[str, Any]) -> MyST | None:
    lines = [f"- {escape_text(n)}" for n in eda.get("notices") or []]
    lines += [f"- could not decode {escape_text(f.get('id'))}: {escape_text(f.get('error'))}"
              for f in eda.get("load_failures") or [] if isinstance(f, Mapping)]
    return MyST("\n".join(lines)) if lines else None


def _samples(figures: dict[str, str]) -> MyST | None:
    stems = sorted(s for s in figures if s.startswith("samples_"))
    blocks = []
    for stem in stems:
        rel = figures.pop(stem)
        caption = f"Sample images: {_human(stem[len('samples_'):])}"
        blocks.append(f":::{{figure}} {rel}\n:alt: {escape_text(caption)}\n\n{escape_text(caption)}\n:::")
    return MyST("\n\n".join(blocks)) if blocks else None


def _generic(value: Any, depth: int = 0) -> MyST:
    """An unknown key, shown by its shape with humanised labels and rounded numbers."""
    if isinstance(value, Mapping):
        if not value:
            return MyST("Nothing recorded.")
        scalars = [(k, v) for k, v in value.items() if not isinstance(v, (Mapping, list))]
        parts = [md_table(["", "Value"], [[_human(k).capitalize(), _num(v)] for k, v in scalars])] if scalars else []
        for key, sub in value.items():
            if isinstance(sub, (Mapping, list)):
                body = _generic(sub, depth + 1) if depth < 2 else escape_text(_num(str(sub)[:200]))
                parts.append(f"**{escape_text(_human(key).capitalize())}**\n\n{body}")
        return MyST("\n\n".join(parts))
    if isinstance(value, list):
        if not value:
            return MyST("Nothing recorded.")
        if all(isinstance(v, Mapping) for v in value):
            header = list(dict.fromkeys(k for v in value for k in v))
            return _listing([_human(h).capitalize() for h in header],
                            [[_num(v.get(h)) if not isinstance(v.get(h), (Mapping, list)) else str(v.get(h))[:80]
                              for h in header] for v in value])
        if len(value) > 20 and all(is_number(v) for v in value):
            return escape_text(f"{len(value)} values, from {_num(min(value))} to {_num(max(value))}.")
        return escape_text(", ".join(_num(v) if not isinstance(v, (list, Mapping)) else str(v) for v in value[:MAX_ROWS]))
    return escape_text(_num(value))


def eda_sections(eda: Mapping[str, Any] | None, figures: Mapping[str, str]) -> list[tuple[str, MyST]]:
    """(heading, markdown) pairs of the dataset section; ``figures`` maps an EDA figure's stem to
    its path relative to the page. Figures no section claims end up under "Other figures"."""
    left = dict(figures)
    sections: list[tuple[str, MyST]] = []
    if eda:
        known: list[tuple[str, str, Callable[[], MyST | None]]] = [
            ("counts", "Images, labels and splits", lambda: _overview(eda, left)),
            ("resolution", "Image size and format", lambda: _size_and_format(eda, left)),
            ("brightness", "Brightness", lambda: _brightness(eda, left)),
            ("shortcut_audit", "Shortcut audit of the files", lambda: _audit(
                eda.get("shortcut_audit"), left, "shortcut_audit",
                "Features of the files (size, format, raw brightness) that could give the label away.")),
            ("input_audit", "Shortcut audit of the images methods see", lambda: _audit(
                eda.get("input_audit"), left, "input_audit",
                "The same check on the images as methods receive them (after loading and scaling, inside "
                "the brain mask).")),
            ("masks", "Lesion masks", lambda: _masks(eda.get("masks"))),
            ("skipped", "Skipped files", lambda: _skipped(eda.get("skipped"))),
            ("duplicates", "Duplicates", lambda: _duplicates(eda.get("duplicates"))),
            ("notices", "Notices", lambda: _notices(eda)),
        ]
        for key, heading, render in known:
            if set(eda) & _SHOWN_BY.get(key, {key}):
                body = render()
                if body:
                    sections.append((heading, body))
        for key, value in eda.items():
            if key not in _HANDLED:
                sections.append((_human(key).capitalize(), _generic(value)))
    samples = _samples(left)
    if samples:
        sections.append(("Sample images", samples))
    if left:
        sections.append(("Other figures", MyST("\n\n".join(f for f in (_figure(left, s) for s in sorted(left)) if f))))
    return sections
