"""magsleep: find out, with honest numbers, whether evening magnesium changes your sleep."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("magsleep")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
