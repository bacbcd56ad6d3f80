"""What a producer of points needs from storage: the two protocols :class:`~collector.storage.pipeline.Pipeline` meets.

Wearable sessions only put points (:class:`PointSink`); the dose journal's mirror also deletes a
point it had written and waits for delivery (:class:`PointStore`). Defined once here so that every
package that hands points on names the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from collector.storage.lineprotocol import Point


class PointSink(Protocol):
    """Where points go (the storage pipeline in production)."""

    async def put(self, points: Iterable[Point]) -> None: ...


class PointStore(PointSink, Protocol):
    """A sink that can also delete one stored point and wait until what it took is delivered."""

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None: ...

    async def flush(self, timeout: float | None = None) -> None: ...
