"""Optional hooks for active profiles: protocols that talk to the device instead of only listening.

A profile may implement any of these on top of :class:`~collector.ble.profiles.base.Profile`:

``async on_connect(client, ctx)``
    after the session subscribed the profile's ``subscriptions``: start streams, pull history,
    measure clock skew. Points go out through ``ctx.emit``.
``async pull(client, ctx)`` with ``pull_interval_s``
    called every ``pull_interval_s`` seconds (session clock) while connected (stored history).
``async on_disconnect(client, ctx)``
    on a clean stop while the link is still up: stop streams so the device can sleep.

Hooks are run by :class:`ProfileHooks` (owned by the session). A hook that raises is logged and
counted, never fatal to the session: a device whose history pull fails keeps streaming heart rate.
Per-device state that must survive reconnects lives in ``ctx.memory`` (and on disk under
``ctx.state_dir`` when it must survive a restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from collector.clock import Clock
from collector.storage.lineprotocol import Point

if TYPE_CHECKING:
    from bleak import BleakClient

log = logging.getLogger(__name__)

#: Real seconds a clean-stop hook may take (the daemon's stop budget is a few seconds in all).
STOP_HOOK_TIMEOUT_S = 1.0


@dataclass
class ProfileContext:
    """What a hook may use: the device, its tags, the clock, where points and state go."""

    address: str
    alias: str
    tags: Mapping[str, str]
    clock: Clock
    emit: Callable[[list[Point]], None]
    touch: Callable[[], None] = lambda: None
    state_dir: Path | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    #: Hook failures so far (for tests and status).
    errors: int = 0


@runtime_checkable
class ConnectHook(Protocol):
    async def on_connect(self, client: BleakClient, ctx: ProfileContext) -> None: ...


@runtime_checkable
class PullHook(Protocol):
    pull_interval_s: float

    async def pull(self, client: BleakClient, ctx: ProfileContext) -> None: ...


@runtime_checkable
class DisconnectHook(Protocol):
    async def on_disconnect(self, client: BleakClient, ctx: ProfileContext) -> None: ...


class ProfileHooks:
    """Runs the optional hooks of a session's profiles; one context per profile for the session."""

    def __init__(
        self,
        profiles: Sequence[object],
        *,
        address: str,
        alias: str,
        tags: Mapping[str, str],
        clock: Clock,
        emit: Callable[[list[Point]], None],
        touch: Callable[[], None] = lambda: None,
        state_dir: Path | None = None,
        history_pull_s: float | None = None,
    ) -> None:
        self._clock = clock
        self._history_pull_s = history_pull_s
        self._profiles = [p for p in profiles if isinstance(p, (ConnectHook, PullHook, DisconnectHook))]
        self.contexts: dict[str, ProfileContext] = {
            _name(p): ProfileContext(address, alias, tags, clock, emit, touch, state_dir) for p in self._profiles
        }
        self._next_pull: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._profiles)

    async def connected(self, client: BleakClient) -> None:
        now = self._clock.monotonic()
        for p in self._profiles:
            if isinstance(p, ConnectHook):
                await self._guard(p, "on_connect", p.on_connect(client, self.contexts[_name(p)]))
            if isinstance(p, PullHook):
                self._next_pull[_name(p)] = now + self._interval(p)

    def pull_due(self, now: float) -> bool:
        return any(now >= t for t in self._next_pull.values())

    async def pull(self, client: BleakClient) -> None:
        now = self._clock.monotonic()
        for p in self._profiles:
            name = _name(p)
            if isinstance(p, PullHook) and now >= self._next_pull.get(name, float("inf")):
                self._next_pull[name] = now + self._interval(p)
                await self._guard(p, "pull", p.pull(client, self.contexts[name]))

    def _interval(self, p: PullHook) -> float:
        """``pull_interval_s``; ``ble.history_pull_s`` for profiles that pull stored history."""
        if self._history_pull_s is not None and getattr(p, "pulls_history", False):
            return self._history_pull_s
        return p.pull_interval_s

    async def stopping(self, client: BleakClient) -> None:
        """Clean stop with the link up: each on_disconnect gets at most ``STOP_HOOK_TIMEOUT_S``."""
        for p in self._profiles:
            if isinstance(p, DisconnectHook) and client.is_connected:
                coro = p.on_disconnect(client, self.contexts[_name(p)])
                await self._guard(p, "on_disconnect", asyncio.wait_for(coro, STOP_HOOK_TIMEOUT_S))

    async def _guard(self, profile: object, what: str, coro: Coroutine[Any, Any, None]) -> None:
        ctx = self.contexts[_name(profile)]
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing hook never ends the session
            ctx.errors += 1
            level = logging.WARNING if ctx.errors == 1 else logging.DEBUG
            log.log(level, "%s: %s %s failed: %s", ctx.alias, _name(profile), what, exc)


def _name(profile: object) -> str:
    return str(getattr(profile, "name", type(profile).__name__))
