"""InfluxQL query targets for grafana-foundation-sdk, which has no InfluxDB query type.

The JSON matches what Grafana's InfluxDB data source stores for a raw InfluxQL query
(``rawQuery: true``), so the same target works against InfluxDB 1.x, the v1-compatible API of
2.x (InfluxQL mode) and 3.x.
"""

from __future__ import annotations

import typing
from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

ResultFormat = Literal["time_series", "table", "logs"]

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = dashboard.DataSourceRef(type_val="influxdb", uid="${" + DATASOURCE_VARIABLE + "}")


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(
        self,
        query: str = "",
        ref_id: str = "A",
        alias: str | None = None,
        result_format: ResultFormat = "time_series",
        hide: bool | None = None,
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.alias = alias
        self.result_format = result_format
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder for :class:`InfluxQLQuery` (``InfluxQL(query).ref_id("B").alias("HR")``)."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query, datasource=DATASOURCE)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> typing.Self:
        self._internal.alias = alias
        return self

    def table(self) -> typing.Self:
        self._internal.result_format = "table"
        return self


class InfluxAnnotationTarget:
    """The ``target`` of an InfluxQL annotation (Grafana >= 10 keeps the query here)."""

    def __init__(self, query: str, text_column: str = "", tags_column: str = "", title_column: str = "") -> None:
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        return {
            "fromAnnotations": True,
            "query": self.query,
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
            "tagsColumn": self.tags_column,
            "textColumn": self.text_column,
            "titleColumn": self.title_column,
        }


class InfluxAnnotation(cogbuilder.Builder[InfluxAnnotationTarget]):
    """Builder for :class:`InfluxAnnotationTarget`, usable as ``AnnotationQuery().target(...)``."""

    def __init__(self, query: str, *, text_column: str = "", tags_column: str = "", title_column: str = "") -> None:
        self._internal = InfluxAnnotationTarget(query, text_column, tags_column, title_column)

    def build(self) -> InfluxAnnotationTarget:
        return self._internal
