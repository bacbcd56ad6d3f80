"""Bluetooth LE: device profiles, the device registry and the collector daemon."""
