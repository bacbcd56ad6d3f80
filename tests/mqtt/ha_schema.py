"""Home Assistant's MQTT discovery payloads as JSON Schemas, written from HA's documentation.

Per component (sensor, binary_sensor, button, event): the required keys, the types of the
optional ones, and the rules HA applies to sensors (a duration needs d/h/min/s/ms, a battery %,
timestamp/date/enum sensors take no unit and no state_class, an enum lists its options). Keys HA
does not know are errors (its discovery schema rejects extra keys).
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]

_STR = {"type": "string", "minLength": 1}
_TOPIC = {"type": "string", "pattern": r"^[^#+]+$"}

DEVICE = {
    "type": "object",
    "properties": {
        "identifiers": {"anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}]},
        "connections": {"type": "array", "items": {"type": "array", "items": _STR, "minItems": 2, "maxItems": 2}},
        "name": {"type": "string"}, "manufacturer": {"type": "string"}, "model": {"type": "string"},
        "model_id": {"type": "string"}, "sw_version": {"type": "string"}, "hw_version": {"type": "string"},
        "serial_number": {"type": "string"}, "suggested_area": {"type": "string"},
        "configuration_url": {"type": "string"}, "via_device": {"type": "string"},
    },
    "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
    "additionalProperties": False,
}

ORIGIN = {
    "type": "object",
    "properties": {"name": _STR, "sw_version": {"type": "string"}, "support_url": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}

COMMON: dict[str, Any] = {
    "name": {"type": ["string", "null"]},
    "unique_id": _STR,
    "object_id": _STR,
    "availability_topic": _TOPIC,
    "payload_available": {"type": "string"},
    "payload_not_available": {"type": "string"},
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "device": DEVICE,
    "origin": ORIGIN,
    "icon": {"type": "string", "pattern": r"^mdi:[a-z0-9-]+$"},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "enabled_by_default": {"type": "boolean"},
    "json_attributes_topic": _TOPIC,
    "json_attributes_template": {"type": "string"},
    "qos": {"enum": [0, 1, 2]},
    "encoding": {"type": "string"},
    "value_template": {"type": "string"},
}

SENSOR_DEVICE_CLASSES = [
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery", "blood_glucose_concentration",
    "carbon_dioxide", "carbon_monoxide", "current", "data_rate", "data_size", "date", "distance", "duration",
    "energy", "energy_storage", "enum", "frequency", "gas", "humidity", "illuminance", "irradiance",
    "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1",
    "pm10", "pm25", "power_factor", "power", "precipitation", "precipitation_intensity", "pressure",
    "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide", "temperature",
    "timestamp", "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage", "volume",
    "volume_storage", "volume_flow_rate", "water", "weight", "wind_speed",
]

SENSOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        **COMMON,
        "state_topic": _TOPIC,
        "device_class": {"enum": SENSOR_DEVICE_CLASSES},
        "state_class": {"enum": ["measurement", "measurement_angle", "total", "total_increasing"]},
        "unit_of_measurement": _STR,
        "suggested_display_precision": {"type": "integer", "minimum": 0},
        "options": {"type": "array", "items": _STR, "minItems": 1},
        "expire_after": {"type": "integer", "minimum": 0},
        "force_update": {"type": "boolean"},
        "last_reset_value_template": {"type": "string"},
    },
    "required": ["state_topic"],
    "additionalProperties": False,
    "allOf": [
        {"if": {"properties": {"device_class": {"const": "duration"}}, "required": ["device_class"]},
         "then": {"properties": {"unit_of_measurement": {"enum": ["d", "h", "min", "s", "ms", "µs"]}},
                  "required": ["unit_of_measurement"]}},
        {"if": {"properties": {"device_class": {"const": "battery"}}, "required": ["device_class"]},
         "then": {"properties": {"unit_of_measurement": {"const": "%"}}, "required": ["unit_of_measurement"]}},
        {"if": {"properties": {"device_class": {"enum": ["timestamp", "date", "enum"]}},
                "required": ["device_class"]},
         "then": {"not": {"anyOf": [{"required": ["unit_of_measurement"]}, {"required": ["state_class"]}]}}},
        {"if": {"properties": {"device_class": {"const": "enum"}}, "required": ["device_class"]},
         "then": {"required": ["options"]}, "else": {"not": {"required": ["options"]}}},
    ],
}

BINARY_SENSOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        **COMMON,
        "state_topic": _TOPIC,
        "payload_on": {"type": "string"},
        "payload_off": {"type": "string"},
        "off_delay": {"type": "integer", "minimum": 0},
        "expire_after": {"type": "integer", "minimum": 0},
        "force_update": {"type": "boolean"},
        "device_class": {"enum": [
            "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door",
            "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug",
            "power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update",
            "vibration", "window"]},
    },
    "required": ["state_topic"],
    "additionalProperties": False,
}

BUTTON: dict[str, Any] = {
    "type": "object",
    "properties": {
        **COMMON,
        "command_topic": _TOPIC,
        "command_template": {"type": "string"},
        "payload_press": {"type": "string"},
        "retain": {"type": "boolean"},
        "device_class": {"enum": ["identify", "restart", "update"]},
    },
    "required": ["command_topic"],
    "additionalProperties": False,
}

EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **COMMON,
        "state_topic": _TOPIC,
        "event_types": {"type": "array", "items": _STR, "minItems": 1},
        "device_class": {"enum": ["button", "doorbell", "motion"]},
    },
    "required": ["state_topic", "event_types"],
    "additionalProperties": False,
}

SCHEMAS = {"sensor": SENSOR, "binary_sensor": BINARY_SENSOR, "button": BUTTON, "event": EVENT}


def check(component: str, payload: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if HA would not take ``payload`` for ``component``."""
    jsonschema.Draft202012Validator(SCHEMAS[component]).validate(payload)
