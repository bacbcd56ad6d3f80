"""Device profiles: one module per profile with the :class:`~collector.ble.profiles.base.Profile` interface."""

from __future__ import annotations

from collector.ble.profiles.base import Profile, Subscription
from collector.ble.profiles.heart_rate import HeartRateProfile

#: Every streaming profile magsleep knows, by name.
PROFILES: dict[str, Profile] = {p.name: p for p in (HeartRateProfile(),)}


def matching_profiles(service_uuids: set[str] | frozenset[str] | list[str]) -> list[Profile]:
    """Profiles whose services appear among ``service_uuids`` (lowercase 128-bit)."""
    have = {u.lower() for u in service_uuids}
    return [p for p in PROFILES.values() if p.service_uuids & have]


__all__ = ["PROFILES", "Profile", "Subscription", "matching_profiles"]
