"""The one module that makes the doses' points: exact lines, and every point fits the schema."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID

from collector.doses.entities import Dose, Lights, LightsEvent, NightTag, NightTagName, Source
from collector.doses.forms import Form
from collector.doses.points import dose_point, lights_point_of, tag_point, to_ns
from collector.storage.lineprotocol import encode_point
from collector.storage.schema import validate_point

AT = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)


def test_dose_tag_and_lights_lines() -> None:
    dose = Dose(id=UUID("8c1d0000-0000-4000-8000-000000000001"), person="alice", supplement="magnesium",
                form=Form.glycinate, amount_mg=300, elemental_mg=42.3, elemental_computed=True, taken_at=AT,
                note='before "bed"', source=Source.cli, recorded_at=AT, updated_at=AT)
    tag = NightTag(person="alice", night=date(2026, 11, 20), tag=NightTagName.alcohol, recorded_at=AT)
    lights = Lights(person="alice", night=date(2026, 11, 20), event=LightsEvent.lights_out, at=AT,
                    source=Source.api, recorded_at=AT)
    points = [dose_point(dose, to_ns(AT) + 1), tag_point(tag), lights_point_of(lights),
              lights_point_of(lights, value=False)]
    for p in points:
        validate_point(p)  # measurement, tags and field types as collector/storage/schema.py has them
    noon = to_ns(datetime(2026, 11, 20, 12, tzinfo=UTC))
    assert [encode_point(p) for p in points] == [
        'supplement_dose,form=glycinate,person=alice,source=cli,supplement=magnesium '
        f'amount_mg=300,dose_id="8c1d0000-0000-4000-8000-000000000001",elemental_mg=42.3,'
        f'note="before \\"bed\\"" {to_ns(AT) + 1}',
        f'night_tag,person=alice,tag=alcohol night="2026-11-20",value=true {noon}',
        f'night_tag,person=alice,tag=lights_out at={to_ns(AT)}i,night="2026-11-20",value=true {noon}',
        f'night_tag,person=alice,tag=lights_out at={to_ns(AT)}i,night="2026-11-20",value=false {noon}',
    ]
    assert (to_ns(AT), noon) == (1_795_210_200 * 10**9, 1_795_176_000 * 10**9)  # calendar.timegm
