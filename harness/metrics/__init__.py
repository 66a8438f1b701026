"""Detection metrics (AUROC, AP, CIs, pixel metrics) and generative metrics (FID, IS, KID)."""
