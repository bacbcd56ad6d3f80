"""The real ``magsleep`` console script in a subprocess, with its own HOME, config and state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w


def magsleep_exe() -> Path:
    """The installed console script next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "magsleep"
    if beside.is_file():
        return beside
    found = shutil.which("magsleep")
    assert found, "the magsleep console script is not installed: run ./scripts/setup"
    return Path(found)


@dataclass
class Console:
    """Runs ``magsleep`` as a user would, in a temporary home with a settings file of its own."""

    home: Path
    settings: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0

    @property
    def config(self) -> Path:
        return self.home / "magsleep.toml"

    def write_config(self) -> None:
        data = {"storage": {"state_dir": str(self.home / "state")}, **self.settings}
        self.config.write_bytes(tomli_w.dumps(data).encode())

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSLEEP_")}
        env.update(HOME=str(self.home), MAGSLEEP_CONFIG=str(self.config), COLUMNS="80",
                   NO_COLOR="1", TERM="dumb")
        env.update(extra)
        return env

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``magsleep ARGS`` from the temporary home; output of both streams in ``.stdout``/``.stderr``."""
        if not self.config.is_file():
            self.write_config()
        return subprocess.run([str(magsleep_exe()), *args], cwd=self.home, env=self.env(**env),
                              capture_output=True, text=True, timeout=self.timeout_s, check=False)


def flat(text: str) -> str:
    """Output with rich's line wrapping and box characters folded away, for phrase checks."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())
