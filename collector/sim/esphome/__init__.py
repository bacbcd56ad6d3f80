"""A virtual ESPHome Bluetooth proxy speaking the real native API (see collector/sim/esphome/proxy.py)."""

from __future__ import annotations

from collector.sim.esphome.proxy import ProxiedDevice, ProxyStats, VirtualEsphomeProxy, advertisement_data

__all__ = ["ProxiedDevice", "ProxyStats", "VirtualEsphomeProxy", "advertisement_data"]
