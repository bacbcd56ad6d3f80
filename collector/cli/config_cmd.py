"""``magsleep config``: check and show the effective settings."""

from __future__ import annotations

import json

import typer

from collector.cli.common import console, get_settings

app = typer.Typer(help="Check and show settings.", no_args_is_help=True)


@app.command("check")
def check(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Validate the settings and print them with secrets masked."""
    s = get_settings()
    data = s.masked()
    if as_json:
        console.print_json(json.dumps(data))
        return
    console.print("[green]settings are valid[/green]")

    def show(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                show(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for i, v in enumerate(node):
                show(f"{prefix}[{i}]", v)
        else:
            console.print(f"  {prefix} = {node!r}", highlight=False)

    show("", data)
