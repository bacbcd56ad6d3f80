"""`magsleep night` and `magsleep nights` mixed up: the error says which one was meant."""

from __future__ import annotations

import pytest

from collector.cli.common import sibling_hint
from tests.cli.console import Console, flat


@pytest.mark.parametrize(("argv", "meant"), [
    (["night", "list"], "magsleep nights list"),
    (["night", "compute", "--since", "7d"], "magsleep nights compute"),
    (["nights", "tag", "today", "--alcohol"], "magsleep night tag"),
    (["nights", "lights-out", "--at", "23:10"], "magsleep night lights-out"),
    (["nights", "tags"], "magsleep night tags"),
])
def test_did_you_mean_the_other_group(console: Console, argv: list[str], meant: str) -> None:
    res = console.run(*argv)
    assert res.returncode == 2
    out = flat(res.stderr)
    assert f"No such command '{argv[1]}' in `magsleep {argv[0]}`. Did you mean `{meant}`?" in out


def test_no_hint_for_a_command_neither_group_has(console: Console) -> None:
    res = console.run("night", "frobnicate")
    assert res.returncode == 2
    assert "No such command 'frobnicate'" in flat(res.stderr)
    assert "Did you mean" not in res.stderr


def test_sibling_hint() -> None:
    assert sibling_hint("night", "compute") == "magsleep nights compute"
    assert sibling_hint("nights", "lights-on") == "magsleep night lights-on"
    assert sibling_hint("night", "tag") is None  # its own command, not the sibling's
    assert sibling_hint("dose", "compute") is None  # only night/nights are siblings
