"""Who exists: the one person resolver, from the settings and the device registry.

The configured persons (``[[persons]]``) come first; a person known only from the device registry
(``devices.json``: a wearable paired before its person was removed from the config) is accepted
for doses, night tags and lights, with the defaults (UTC, night window 18:00-14:00). The dose
service, the API and the CLI get a :class:`Persons` injected; the dose rules see it only through
:class:`collector.doses.rules.PersonLookup`. Commands that need a configured person (effects,
plans) ask :meth:`Persons.configured_names` / :meth:`Persons.one_configured`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from collector.doses.rules import ConfiguredPersons
from collector.errors import ConfigError, MagsleepError
from collector.settings import NO_PERSONS, Settings

log = logging.getLogger(__name__)


def registry_persons(settings: Settings) -> Callable[[], list[str]]:
    """Persons of the device registry (``<state_dir>/devices.json``), read on each call; empty
    (with a warning) if it is unreadable."""

    def persons() -> list[str]:
        from collector.ble.registry import DeviceRegistry

        try:
            return sorted({d.person for d in DeviceRegistry.for_settings(settings)})
        except MagsleepError as exc:
            log.warning("doses: only configured persons are accepted: %s", exc)
            return []

    return persons


class Persons(ConfiguredPersons):
    """The configured persons plus those of the device registry (``registry``: default the real one)."""

    def __init__(self, settings: Settings, *, registry: Callable[[], Iterable[str]] | None = None) -> None:
        super().__init__(settings)
        self._registry = registry if registry is not None else registry_persons(settings)

    def extra_names(self) -> Iterable[str]:
        return self._registry()

    def configured_names(self, wanted: Sequence[str] | None = None) -> list[str]:
        """The configured persons named in ``wanted`` (each checked), or all of them; a
        :class:`ConfigError` naming the known ones otherwise."""
        if wanted:
            for name in wanted:
                self.settings.person(name)  # ConfigError with the known names
            return list(wanted)
        if not self.settings.persons:
            raise ConfigError(NO_PERSONS)
        return [p.name for p in self.settings.persons]

    def one_configured(self, name: str | None) -> str:
        """``name`` (a configured person), or the only configured person; a
        :class:`ConfigError` saying what to pass otherwise."""
        return self.settings.one_person(name).name


__all__ = ["Persons", "registry_persons"]
