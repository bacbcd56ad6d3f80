"""Simulated wearables and nights: the night generator, bulk backfill and the virtual BlueZ."""
