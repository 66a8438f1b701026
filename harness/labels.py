"""The two labels every dataset is mapped to, and their integer codes (index = code)."""

TUMOR = "tumor"
NO_TUMOR = "no_tumor"
LABELS = (NO_TUMOR, TUMOR)  # 0 no_tumor, 1 tumor
