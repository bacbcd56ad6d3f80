"""Nights: RR clean-up, sleep staging, segmentation and nightly metrics (docs/nights.md)."""
