"""``magsleep scan | pair | devices | forget | run``: wearables and the collector daemon."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from collector.app import daemon
from collector.ble import logs, pairing
from collector.ble.registry import DeviceRegistry, load_status, status_path
from collector.cli.common import Column, config_path, console, fail, fitted_table, get_settings
from collector.errors import MagsleepError


def _table(results: dict[str, pairing.ScanResult], *, via: bool = False) -> Table:
    table = Table(title="Nearby Bluetooth LE devices", expand=False)
    for col in ("Name", "Address", "RSSI", "Profiles", *(("Heard by",) if via else ())):
        table.add_column(col)
    for r in sorted(results.values(), key=lambda r: (not r.profiles, -r.rssi)):
        table.add_row(escape(r.name or "?"), r.address, f"{r.rssi} dBm", ", ".join(r.profiles) or "-",
                      *((escape(r.via),) if via else ()))
    return table


def scan(
    timeout: Annotated[
        float | None, typer.Option("--timeout", "-t", help="Seconds to scan (default ble.scan_timeout_s).")
    ] = None,
) -> None:
    """Scan for wearables and show them in a live table."""
    settings = get_settings()
    secs = timeout if timeout is not None else settings.ble.scan_timeout_s
    if secs <= 0:
        fail("--timeout must be > 0 seconds")
    via = bool(settings.ble.proxies)  # with ESPHome proxies, say who heard each device
    with Live(_table({}, via=via), console=console, refresh_per_second=4, transient=True) as live:
        try:
            found = asyncio.run(pairing.scan(secs, on_update=lambda t: live.update(_table(t, via=via)),
                                             proxies=settings.ble.proxies))
        except MagsleepError as exc:
            live.stop()
            fail(str(exc))
    console.print(_table(found, via=via))
    n = sum(1 for r in found.values() if r.profiles)
    console.print(f"{len(found)} device(s) seen, {n} with a supported profile. "
                  "Pair one with: magsleep pair ADDRESS --person NAME")


def pair(
    device: Annotated[str, typer.Argument(help="Address (AA:BB:CC:DD:EE:FF) or advertised name.")],
    person: Annotated[str, typer.Option("--person", "-p", help="Whose wearable it is (a configured person).")],
    alias: Annotated[str | None, typer.Option("--alias", help="Name for the device tag (default from its name).")]
    = None,
    bond: Annotated[bool, typer.Option("--bond/--no-bond", help="Bond (pair) with the device.")] = True,
) -> None:
    """Connect to a wearable, bond, check its profiles and register it for a person."""
    settings = get_settings()
    try:
        registry = DeviceRegistry.for_settings(settings)
        reg = asyncio.run(pairing.pair(settings, registry, device, person=person, alias=alias, bond=bond))
    except MagsleepError as exc:
        fail(str(exc))
    info = ", ".join(x for x in (reg.model, reg.firmware and f"firmware {reg.firmware}") if x)
    console.print(f"registered [bold]{reg.alias}[/bold] ({reg.address}) for {reg.person}: "
                  f"{', '.join(reg.profiles)}{f' ({info})' if info else ''}")


def _ago(ns: int) -> str:
    if not ns:
        return "never"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


#: The device listing; on a narrow terminal the columns with the highest ``drop`` are left out.
DEVICE_TABLE = (Column("Alias"), Column("Person"), Column("Address"), Column("Profiles", drop=3),
                Column("Model", drop=4), Column("State"), Column("Last seen", drop=1), Column("Battery", drop=2))


def devices() -> None:
    """List registered wearables with last seen, battery and state."""
    settings = get_settings()
    try:
        registry = DeviceRegistry.for_settings(settings)
    except MagsleepError as exc:
        fail(str(exc))
    if not len(registry):
        console.print("no devices registered; find one with 'magsleep scan', then 'magsleep pair'")
        return
    status = load_status(status_path(settings))
    rows = []
    for d in registry:
        st = status.get(d.address)
        model = " ".join(x for x in (d.model, d.location and f"({d.location})") if x) or "-"
        rows.append([escape(d.alias), escape(d.person), d.address, ", ".join(d.profiles), escape(model),
                     st.state if st else "never run", _ago(st.last_seen_ns) if st else "never",
                     f"{st.battery_pct}%" if st and st.battery_pct is not None else "-"])
    console.print(fitted_table(DEVICE_TABLE, rows, title="Registered devices"))


def forget(
    device: Annotated[str, typer.Argument(help="Alias, address or name of a registered device.")],
) -> None:
    """Remove a wearable from the registry and ask BlueZ to remove its bond."""
    settings = get_settings()
    try:
        registry = DeviceRegistry.for_settings(settings)
        dev, unbonded = asyncio.run(pairing.forget(settings, registry, device))
    except MagsleepError as exc:
        fail(str(exc))
    note = "bond removed" if unbonded else "BlueZ did not know a bond for it"
    console.print(f"forgot {dev.alias} ({dev.address}); {note}")


def run() -> None:
    """Collect from every registered wearable until SIGTERM/SIGINT (then flush and exit 0)."""
    settings = get_settings()
    logs.configure(settings.log_level)
    try:
        code = asyncio.run(daemon.main(settings, config_path()))
    except MagsleepError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the Bluetooth commands to the top-level app."""
    app.command("scan")(scan)
    app.command("pair")(pair)
    app.command("devices")(devices)
    app.command("forget")(forget)
    app.command("run")(run)
