"""The one small interface every device profile implements."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from collector.storage.lineprotocol import Point


@dataclass(frozen=True, slots=True)
class Subscription:
    """A characteristic to subscribe to (notify/indicate) and whether the device must serve it."""

    uuid: str
    required: bool = True


class Profile(Protocol):
    """A device profile: which UUIDs it matches, what to subscribe to, how to turn bytes into points.

    ``parse`` is pure and cheap: it raises :class:`collector.errors.ParseError` (and nothing else)
    for bytes it cannot decode; the session counts and logs those, they are never fatal.
    """

    name: str
    #: A device matches when it serves (or advertises) any of these services.
    service_uuids: frozenset[str]
    subscriptions: tuple[Subscription, ...]

    def parse(self, uuid: str, data: bytes | bytearray, received_ns: int, tags: Mapping[str, str]) -> list[Point]:
        """Points for one notification of characteristic ``uuid`` received at ``received_ns``."""
        ...


#: ``(data, received_ns, tags) -> points``; raises only ParseError.
Parser = Callable[[bytes | bytearray, int, Mapping[str, str]], list[Point]]


def parser_for(profile: Profile, uuid: str) -> Parser:
    """The parse function for one subscribed characteristic, resolved once per subscription.

    A profile may offer ``parser(uuid) -> Parser`` to skip its per-call UUID dispatch on the hot
    path (heart_rate does); otherwise ``parse`` is bound to ``uuid``.
    """
    fast = getattr(profile, "parser", None)
    if fast is not None:
        return fast(uuid)  # type: ignore[no-any-return]
    return functools.partial(profile.parse, uuid)
