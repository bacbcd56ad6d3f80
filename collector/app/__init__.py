"""The composition layer: wires the domain packages into processes.

``daemon.py`` is ``magsleep run`` (BLE sessions, the dose API, Home Assistant over MQTT and the
nights schedule on one pipeline); ``persons.py`` resolves who exists (settings and the device
registry) for the dose service, the API and the CLI. Imports flow one way: ``app/`` may use any
domain package; no domain package imports ``app/``.
"""
