"""Datasets (embedded cohort, folder layouts), splits with manifests, EDA."""
