"""Home Assistant over MQTT: discovery, states, buttons and evening reminders (docs/home-assistant.md)."""
