"""Results -> MyST report pages, figures and image grids. Reads results files only."""
