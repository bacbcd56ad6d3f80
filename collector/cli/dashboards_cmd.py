"""``magsleep dashboards``: build the Grafana dashboards from code and push them to a Grafana."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from collector.cli.common import console, fail
from collector.errors import MagsleepError

app = typer.Typer(help="Grafana dashboards as code: build the JSON, push to a Grafana.", no_args_is_help=True)


@app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the dashboard JSON files.")] = Path(
        "dashboards"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the files differ from what the code builds.")
    ] = False,
) -> None:
    """Regenerate dashboards/*.json from collector/dashboards."""
    from collector.dashboards import stale, write_all

    if check:
        bad = stale(out)
        if bad:
            fail(f"stale dashboards in {out}: {', '.join(bad)}; run 'magsleep dashboards build'", code=1)
        console.print(f"dashboards in {out} are up to date")
        return
    for path in write_all(out):
        console.print(f"wrote {path}")


@app.command("push")
def push(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://localhost:3000")],
    token: Annotated[
        str,
        typer.Option(
            "--token", envvar="GRAFANA_TOKEN", help="Service-account token (or $GRAFANA_TOKEN).", show_default=False
        ),
    ],
    folder: Annotated[str, typer.Option("--folder", help="Folder title for the dashboards.")] = "magsleep",
    annotations: Annotated[
        bool, typer.Option("--annotations", help="Also add the logged doses as Grafana annotations.")
    ] = False,
    person: Annotated[
        str | None, typer.Option("--person", "-p", help="Only this person's doses (with --annotations).")
    ] = None,
    influx_url: Annotated[
        str | None,
        typer.Option("--influx-url", help="InfluxDB URL as Grafana sees it (default: the configured one)."),
    ] = None,
) -> None:
    """Create/update the InfluxDB data source and folder, upload the dashboards (by uid)."""
    from collector.cli.common import get_settings
    from collector.dashboards.push import PushOptions, push_all

    settings = get_settings()
    i = settings.influx
    try:
        opts = PushOptions(
            url=url,
            token=token,
            folder=folder,
            annotations=annotations,
            person=person,
            influx_url=influx_url or i.url,
            influx_database=i.database if i.embedded or i.version == 1 else i.bucket,
            influx_version=1 if i.embedded else i.version,
            influx_token=i.token_value(),
            influx_user=i.username,
            influx_password=i.password_value(),
        )
    except MagsleepError as exc:
        fail(str(exc))
    try:
        result = asyncio.run(push_all(opts, settings=settings if annotations else None))
    except MagsleepError as exc:
        fail(str(exc))
    console.print(
        f"data source {result.datasource_uid} {result.datasource_action}; folder {result.folder_uid}; "
        f"{len(result.dashboards)} dashboards uploaded; {result.annotations} annotations added"
    )
    for uid, url_path in result.dashboards.items():
        console.print(f"  {uid}: {url.rstrip('/')}{url_path}")
