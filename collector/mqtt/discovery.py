"""The topics magsleep uses and the Home Assistant discovery configs of its entities (pure).

Discovery topics are ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (HA's MQTT
discovery); every entity has a ``unique_id``, the shared ``availability_topic`` (the daemon's will
sets it to ``offline``) and a ``device`` block: one device per person, one per wearable.
States live under ``<topic_prefix>/person/<name>/<key>`` and ``<topic_prefix>/device/<alias>/<key>``,
one plain value per topic, retained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from collector import __version__
from collector.ble.registry import RegisteredDevice

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
PRESS = "PRESS"
#: The payload of a missing value (HA shows the sensor as unknown).
NONE = "None"
HA_STATE_MAX = 255  # HA keeps at most this many characters of a state

Component = Literal["sensor", "binary_sensor", "button", "event"]
Command = Literal["took_magnesium", "lights_out", "lights_on"]
COMMANDS: tuple[Command, ...] = ("took_magnesium", "lights_out", "lights_on")
PLAN_OPTIONS = ("magnesium", "control", "no_plan")
REMINDER_EVENTS = ("take_magnesium", "skip_magnesium")

_ID_RE = re.compile(r"[^A-Za-z0-9_-]")


def object_id(text: str) -> str:
    """``text`` as a discovery node/object id (letters, digits, '_' and '-' only)."""
    return _ID_RE.sub("_", text)


@dataclass(frozen=True, slots=True)
class Topics:
    """Where everything is published; built from ``[mqtt]``."""

    prefix: str = "magsleep"
    discovery_prefix: str = "homeassistant"

    @property
    def node_id(self) -> str:
        return object_id(self.prefix)

    @property
    def availability(self) -> str:
        return f"{self.prefix}/status"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth/last-will topic: "online" after it (re)started."""
        return f"{self.discovery_prefix}/status"

    @property
    def command_filter(self) -> str:
        return f"{self.prefix}/person/+/cmd/+"

    def person(self, person: str, key: str) -> str:
        return f"{self.prefix}/person/{person}/{key}"

    def command(self, person: str, command: str) -> str:
        return f"{self.prefix}/person/{person}/cmd/{command}"

    def device(self, alias: str, key: str) -> str:
        return f"{self.prefix}/device/{alias}/{key}"

    def config(self, component: Component, oid: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{oid}/config"

    def parse_command(self, topic: str) -> tuple[str, str] | None:
        """``(person, command)`` of a command topic; None if ``topic`` is not one."""
        head = f"{self.prefix}/person/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if len(parts) != 3 or parts[1] != "cmd" or not parts[0]:
            return None
        return parts[0], parts[2]


@dataclass(frozen=True, slots=True)
class NightSensor:
    """A number of last night's ``night`` row as a sensor."""

    field: str
    name: str
    unit: str
    device_class: str | None
    icon: str


NIGHT_SENSORS = (
    NightSensor("tst_min", "Last night total sleep", "min", "duration", "mdi:sleep"),
    NightSensor("sol_min", "Last night sleep onset latency", "min", "duration", "mdi:timer-sand"),
    NightSensor("waso_min", "Last night wake after sleep onset", "min", "duration", "mdi:eye-outline"),
    NightSensor("se_pct", "Last night sleep efficiency", "%", None, "mdi:percent"),
    NightSensor("rmssd_ms", "Last night HRV (RMSSD)", "ms", "duration", "mdi:heart-pulse"),
    NightSensor("hr_min5_bpm", "Last night resting heart rate", "bpm", None, "mdi:heart"),
)


@dataclass(frozen=True, slots=True)
class Entity:
    component: Component
    key: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def person_entities(commands: bool) -> list[Entity]:
    """The entities of one person's device."""
    out = [
        Entity("sensor", n.field, n.name, {
            "unit_of_measurement": n.unit, "state_class": "measurement", "icon": n.icon,
            "suggested_display_precision": 0 if n.unit in ("min", "bpm") else 1,
            **({"device_class": n.device_class} if n.device_class else {}),
            "json_attributes_topic": "last_night/attributes",
        })
        for n in NIGHT_SENSORS
    ]
    out += [
        Entity("sensor", "last_night", "Last night", {"device_class": "date", "icon": "mdi:calendar",
                                                      "json_attributes_topic": "last_night/attributes"}),
        Entity("sensor", "tonight_plan", "Tonight's plan", {
            "device_class": "enum", "options": list(PLAN_OPTIONS), "icon": "mdi:clipboard-text",
            "json_attributes_topic": "tonight_plan/attributes"}),
        Entity("binary_sensor", "dose_logged", "Tonight's magnesium logged", {
            "payload_on": ON, "payload_off": OFF, "icon": "mdi:pill"}),
        Entity("sensor", "effect", "Magnesium effect", {
            "icon": "mdi:scale-balance", "json_attributes_topic": "effect/attributes"}),
        Entity("event", "reminder", "Evening reminder", {
            "event_types": list(REMINDER_EVENTS), "icon": "mdi:bell-ring"}),
    ]
    if commands:
        out += [
            Entity("button", "took_magnesium", "Took magnesium", {"icon": "mdi:pill"}),
            Entity("button", "lights_out", "Lights out", {"icon": "mdi:lightbulb-off"}),
            Entity("button", "lights_on", "Lights on", {"icon": "mdi:lightbulb-on"}),
            Entity("sensor", "button_result", "Last button result", {
                "entity_category": "diagnostic", "icon": "mdi:message-text"}),
        ]
    return out


DEVICE_ENTITIES = (
    Entity("binary_sensor", "connected", "Connected", {
        "device_class": "connectivity", "payload_on": ON, "payload_off": OFF,
        "entity_category": "diagnostic"}),
    Entity("sensor", "battery", "Battery", {
        "device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement",
        "entity_category": "diagnostic"}),
    Entity("sensor", "last_seen", "Last seen", {"device_class": "timestamp",
                                                "entity_category": "diagnostic"}),
)

_ORIGIN = {"name": "magsleep", "sw_version": __version__}


def _config(topics: Topics, e: Entity, uid: str, device: dict[str, Any],
            topic_of: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": e.name,
        "unique_id": uid,
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device,
        "origin": _ORIGIN,
    }
    for k, v in e.options.items():
        cfg[k] = topic_of(v) if k == "json_attributes_topic" else v
    if e.component == "button":
        cfg.update(command_topic=topic_of(f"cmd/{e.key}"), payload_press=PRESS, qos=1, retain=False)
    else:
        cfg["state_topic"] = topic_of(e.key)
    return cfg


def person_configs(topics: Topics, person: str, *, commands: bool) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config of every entity of ``person``."""
    node = topics.node_id
    device = {"identifiers": [f"{node}_person_{object_id(person)}"], "name": f"magsleep {person}",
              "manufacturer": "magsleep", "model": "Sleep and magnesium trial", "sw_version": __version__}
    out: dict[str, dict[str, Any]] = {}
    for e in person_entities(commands):
        oid = f"{object_id(person)}_{e.key}"
        out[topics.config(e.component, oid)] = _config(
            topics, e, f"{node}_{oid}", device, lambda key: topics.person(person, key))
    return out


def device_configs(topics: Topics, dev: RegisteredDevice) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config of every entity of a wearable."""
    node = topics.node_id
    device: dict[str, Any] = {
        "identifiers": [f"{node}_device_{object_id(dev.alias)}"],
        "connections": [["bluetooth", dev.address.lower()]],
        "name": f"{dev.name or dev.alias} ({dev.person})", "manufacturer": "magsleep",
        "via_device": f"{node}_person_{object_id(dev.person)}",
    }
    if dev.model:
        device["model"] = dev.model
    if dev.firmware:
        device["sw_version"] = dev.firmware
    out: dict[str, dict[str, Any]] = {}
    for e in DEVICE_ENTITIES:
        oid = f"{object_id(dev.alias)}_{e.key}"
        out[topics.config(e.component, oid)] = _config(
            topics, e, f"{node}_{oid}", device, lambda key: topics.device(dev.alias, key))
    return out
