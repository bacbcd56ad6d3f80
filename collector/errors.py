"""The one exception root of magsleep and its specific subclasses.

Every error a user can meet derives from :class:`MagsleepError`; its message says what to fix.
"""

from __future__ import annotations


class MagsleepError(Exception):
    """Root of every error magsleep raises on purpose."""


class ConfigError(MagsleepError):
    """The settings are invalid; the message names the key and what is allowed."""


class StorageError(MagsleepError):
    """Something went wrong storing or reading data."""


class OutboxFullError(StorageError):
    """The local outbox reached its size bound; points are not accepted until it drains."""


class AlreadyRunningError(MagsleepError):
    """Another process of the same role already uses this state dir (the message names its pid)."""


class JournalUnavailableError(StorageError):
    """The dose journal cannot be opened (damaged, unreadable); doses wait until it is repaired."""


class WriteError(StorageError):
    """InfluxDB refused a write.

    ``status`` is the HTTP status (0 for a connection error), ``retry_after`` the server's
    Retry-After in seconds when it sent one.
    """

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class QueryError(StorageError):
    """An InfluxQL query failed."""


class LocalInfluxError(StorageError):
    """The private local InfluxDB could not be started or stopped."""


class DeviceError(MagsleepError):
    """A Bluetooth LE device or adapter problem; the message carries advice."""


class ParseError(MagsleepError):
    """A device sent bytes a profile could not decode (counted and logged, never fatal)."""


class ValidationError(MagsleepError):
    """User input (a dose, a tag, a file row) is invalid; the message says what to fix."""


class AnalysisError(MagsleepError):
    """Nights or effects could not be computed from the data given."""


class AdapterError(DeviceError):
    """The Bluetooth adapter is missing, powered off or BlueZ is not running."""


class DeviceNotFoundError(DeviceError):
    """A wearable was not seen by a scan or is not in the device registry."""


class PairingError(DeviceError):
    """Bonding with a wearable failed (refused, wrong passkey, timed out)."""


class OutOfSlotsError(DeviceError):
    """The adapter has no free connection slot for another wearable."""


class RegistryError(DeviceError):
    """The device registry file is unreadable or invalid; it is never overwritten silently."""
