"""Device profiles: one module per profile with the :class:`~collector.ble.profiles.base.Profile` interface."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from collector.ble.profiles.bangle import BangleProfile
from collector.ble.profiles.base import Profile, Subscription
from collector.ble.profiles.heart_rate import HeartRateProfile
from collector.ble.profiles.infinitime import InfiniTimeProfile
from collector.ble.profiles.polar_pmd import PolarPmdProfile

if TYPE_CHECKING:
    from collector.settings import BleSettings

#: Every streaming profile magsleep knows, by name.
PROFILES: dict[str, Profile] = {
    p.name: p for p in (HeartRateProfile(), BangleProfile(), InfiniTimeProfile(), PolarPmdProfile())
}


def matching_profiles(service_uuids: set[str] | frozenset[str] | list[str],
                      ble: BleSettings | None = None) -> list[Profile]:
    """Profiles whose services appear among ``service_uuids`` (lowercase 128-bit), including the
    ``[[ble.generic]]`` profiles of ``ble`` when given."""
    from collector.ble.profiles.generic import GenericProfile

    have = {u.lower() for u in service_uuids}
    found: list[Profile] = [p for p in PROFILES.values() if p.service_uuids & have]
    if ble is not None:
        found += [g for g in (GenericProfile(c) for c in ble.generic) if g.service_uuids & have]
    return found


def profiles_for(names: Iterable[str], ble: BleSettings, *, alias: str = "", address: str = "") -> list[Profile]:
    """A device's profiles: the built-ins its registry entry names, plus every ``[[ble.generic]]``
    profile it names or whose ``devices`` list its alias or address."""
    from collector.ble.profiles.generic import GenericProfile

    wanted = list(names)
    out: list[Profile] = [PROFILES[n] for n in wanted if n in PROFILES]
    for g in ble.generic:
        targets = {d.upper() for d in g.devices}
        if g.name in wanted or (alias and alias.upper() in targets) or (address and address.upper() in targets):
            out.append(GenericProfile(g))
    return out


__all__ = ["PROFILES", "Profile", "Subscription", "matching_profiles", "profiles_for"]
