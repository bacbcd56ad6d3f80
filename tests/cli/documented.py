"""Every ``magsleep ...`` command line in README.md and docs/*.md, as command paths."""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_INLINE = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$")  # a command word, or alternatives a|b
_ROOT_OPTIONS_WITH_VALUE = {"-c", "--config"}
_STARTS_A_COMMAND = {"&&", "||", ";", "|", "exec", "sudo", "collector"}  # collector: the compose service


@dataclass(frozen=True)
class Mention:
    """Where a command line is written: file:line and the text from ``magsleep`` on."""

    where: str
    text: str


def _snippets(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every fenced code line and every inline code span."""
    out: list[tuple[int, str]] = []
    prose: list[str] = []
    fenced = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            prose.append("")
            continue
        if fenced:
            out.append((n, line))
            prose.append("")
        else:
            prose.append(line)
    text = "\n".join(prose)
    for m in _INLINE.finditer(text):
        span = m.group(1)
        if "\n\n" not in span:
            out.append((text.count("\n", 0, m.start()) + 1, span.replace("\\|", "|")))
    return out


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose-like code: plain words are enough here
        return text.split("#", 1)[0].split()


def _invokes(toks: list[str], i: int) -> bool:
    """Whether ``toks[i]`` runs magsleep: it starts the line or a command (``&&``, ``docker compose
    run ... collector``), or is the venv's script; not ``cd magsleep`` or ``useradd ... magsleep``."""
    t = toks[i]
    if t.endswith("/bin/magsleep"):
        return True
    return t == "magsleep" and (i == 0 or toks[i - 1] in _STARTS_A_COMMAND)


def mentions() -> list[Mention]:
    """Every command line (from the ``magsleep`` word on) in the documentation."""
    found: list[Mention] = []
    for path in DOCS:
        for n, snippet in _snippets(path):
            toks = _tokens(snippet)
            for i in range(len(toks)):
                if _invokes(toks, i):
                    found.append(Mention(f"{path.relative_to(ROOT)}:{n}", shlex.join(toks[i + 1:])))
                    break
    return found


def _words(text: str) -> list[list[str]]:
    """The leading command words of a line (root options skipped), one list per a|b alternative."""
    toks = _tokens(text)
    words: list[list[str]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in _ROOT_OPTIONS_WITH_VALUE:
            i += 2
            continue
        if not _WORD.match(t):
            break
        words.append(t.split("|"))
        i += 1
    return [list(w) for w in itertools.product(*words)]


def command_path(words: list[str], root: Any) -> tuple[str, ...]:
    """The words that name commands in ``root`` (the full in-process app's click command); an
    unknown word where a command is expected is kept, so the console script has to answer it."""
    node = root
    path: list[str] = []
    for w in words:
        sub: dict[str, Any] | None = getattr(node, "commands", None)  # a group (typer vendors click)
        if sub is None:
            break
        path.append(w)
        node = sub.get(w)
        if node is None:
            break
    return tuple(path)


def command_paths(root: Any) -> dict[tuple[str, ...], list[Mention]]:
    """Each distinct documented command path and where it is written."""
    paths: dict[tuple[str, ...], list[Mention]] = {}
    for m in mentions():
        for words in _words(m.text):
            path = command_path(words, root)
            if path:
                paths.setdefault(path, []).append(m)
    return paths
