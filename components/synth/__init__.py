"""Synthetic datasets in the real on-disk formats, for demos and tests where open data cannot be downloaded."""
