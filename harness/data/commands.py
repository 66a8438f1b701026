"""``python -m harness data splits`` and ``python -m harness data eda``."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.config import Profile, apply_overrides, get_profile, load_toml_overrides, parse_set_option
from harness.data.sources import data_specs, open_dataset
from harness.data.splits import SPLITS, Split, make_split
from harness.data.types import DataSource


def resolve_profile(args: argparse.Namespace) -> Profile:
    """The named profile with ``--config TOML`` overrides, then ``--set`` overrides on top."""
    profile = get_profile(args.profile)
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        profile = apply_overrides(profile, load_toml_overrides(path))
    if getattr(args, "overrides", None):
        profile = apply_overrides(profile, parse_set_option(args.overrides))
    return profile


def _open(args: argparse.Namespace) -> tuple[DataSource, Split]:
    profile = resolve_profile(args)
    source = open_dataset(data_specs(args.data, args.dataset, profile), args.seed)
    return source, make_split(source, args.seed, profile.split)


def splits_command(args: argparse.Namespace) -> int:
    source, split = _open(args)
    print(f"dataset: {source.name} ({source.root}), {len(source.records)} images, "
          f"fingerprint {source.fingerprint()}")
    for notice in source.notices:
        print(f"notice: {notice}")
    counts = split.counts()
    labels = sorted({label for c in counts.values() for label in c})
    print(f"{'split':<8}" + "".join(f"{label:>10}" for label in labels) + f"{'total':>10}")
    for s in SPLITS:
        row = counts[s]
        print(f"{s:<8}" + "".join(f"{row[label]:>10}" for label in labels) + f"{sum(row.values()):>10}")
    _print_subjects_and_strata(source, split)
    print(f"duplicate groups: {len(split.duplicate_groups)} "
          f"({sum(len(g) for g in split.duplicate_groups)} images)")
    print(f"cross-label duplicate groups: {len(split.cross_label_duplicates)} "
          f"({split.n_excluded} images excluded)")
    print(f"near-duplicate groups holding both labels (kept, one split each): "
          f"{len(split.mixed_label_near_duplicates)}")
    print(f"skipped files: {len(source.skipped)}")
    if args.out:
        print(f"manifest: {split.write_manifest(args.out)}")
    print(f"split hash: {split.hash}")
    return 0


def _print_subjects_and_strata(source: DataSource, split: Split) -> None:
    """Subjects per split (what the CIs and model selection really rest on) and, where images
    carry one, the acquisition stratum mix per split (subjects per stratum)."""
    counts = split.subject_counts({r.id: r.stratum for r in source.records})
    if counts is None:
        return  # every image is its own subject: the image counts above say it all
    names = list(counts["train"].get("strata", {}))
    width = {n: max(8, len(n) + 2) for n in names}  # cohort strata read "source/sequence"
    print(f"{'subjects':<8}{'with tumor':>12}{'without':>10}" + "".join(f"{n:>{width[n]}}" for n in names))
    for s, row in counts.items():
        per_stratum = "".join(f"{row['strata'][n]:>{width[n]}}" for n in names)
        print(f"{s:<8}{row['with_tumor']:>12}{row['without']:>10}{per_stratum}")


def eda_command(args: argparse.Namespace) -> int:
    from harness.data.eda import run_eda
    from harness.data.input_audit import load_inputs

    source, split = _open(args)
    out = Path(args.out)
    report = run_eda(source, split, out, inputs=load_inputs(source, split))  # audit what methods see, too
    print(f"dataset: {source.name} ({source.root}), {len(source.records)} images, "
          f"{len(source.skipped)} skipped; split hash: {split.hash}")
    print(f"EDA written to {out}/ (eda.json and figures)")
    flagged = [f for key in ("shortcut_audit", "input_audit") for f in _audit_features(report.get(key))
               if f.get("flagged")]
    for f in flagged:
        print(f"shortcut flag: {f['feature']} alone separates the labels (AUROC {f['auroc']:.3f})")
    if not flagged:
        print("shortcut audit: no feature flagged")
    return 0


def _audit_features(audit: object) -> list[dict]:
    """The audit's per-feature rows: eda.json holds them as a list or under ``"features"``."""
    if isinstance(audit, dict):
        audit = audit.get("features", [])
    return [f for f in audit or [] if isinstance(f, dict)]
