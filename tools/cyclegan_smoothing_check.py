"""Development check of the shared scorer's signed-map smoothing on a trained CycleGAN.

Loads the newest checkpoint of a run's ``cyclegan`` (trains nothing), then for each smoothing
sigma re-selects the map and aggregate on validation exactly as deployed and scores test with
the choice. It prints test numbers, so it refuses any run below seed 100 (the reporting seeds
are 10-19; 0-4 are retired): run it on a development-seed run (docs/protocol.md).

usage: python tools/cyclegan_smoothing_check.py RUN_FOLDER
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from harness import scoring
from harness.method_build import build_method
from harness.request import config_from_dict
from harness.run_inputs import DataLayer, load_size, open_inputs

SIGMAS_PER_PX = (0.0, 1 / 64, 1 / 32, 1 / 16)


def main(run: Path) -> None:
    name = "cyclegan"
    info = json.loads((run / "run.json").read_text())
    config = config_from_dict(info["config"])
    if config.seed < 100:
        sys.exit(f"error: run {info['run_id']} has seed {config.seed}; this prints test numbers, so only "
                 "development seeds (100 and up) are allowed")
    data = DataLayer.default()
    inputs = open_inputs(config, data)
    sets = inputs.load(data, load_size(config), progress=False)
    val, test = sets["val"], sets["test"]
    logger = logging.getLogger(name)
    method, _ = build_method(name, config.method_settings[name], device=torch.device("cpu"),
                             seed=config.training_seed, profile=config.profile.name, output_dir=run / "methods" / name, logger=logger)
    try:
        epoch = method.restore(run / "methods" / name, torch.device("cpu"), config.training_seed, logger)
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    print(f"checkpoint after epoch {epoch}")
    h_val, h_test = method.to_healthy(val), method.to_healthy(test)
    print(f"run {info['run_id']} seed {config.seed} method {name} split {inputs.split.hash[:12]} "
          f"n_val {len(val)} n_test {len(test)}")
    for per_px in SIGMAS_PER_PX:
        sel = scoring.select_scoring(val, h_val, signed_per_px=per_px)
        scores, maps = scoring.deploy(test, h_test, sel, signed_per_px=per_px)
        auroc = roc_auc_score(test.labels.numpy(), scores)
        pix = scoring.pixel_auroc(maps, test.masks, test.brain.squeeze(1)) if test.masks is not None else None
        signed = {k: round(v, 3) for k, v in sel["table"].items()
                  if v is not None and k.endswith("/pixel") and k.split("/")[0] in scoring.SIGNED_KINDS}
        print(f"sigma/px {per_px:.4f} (sigma {per_px * h_val.shape[-1]:.1f} px at {h_val.shape[-1]}): "
              f"val map {sel['map']}/{sel['aggregate']} val AUROC {sel['val_auroc']:.3f} "
              f"val pixel {sel['val_pixel_auroc'] or float('nan'):.3f} | dev-test AUROC {auroc:.3f} pixel {'n/a' if pix is None else f'{pix:.3f}'} "
              f"| val signed pixel {json.dumps(signed)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
