"""The composition layer: wires the domain packages into processes.

``daemon.py`` is ``magsleep run`` (BLE sessions, the dose API, Home Assistant over MQTT and the
nights schedule of ``schedule.py`` on one pipeline); ``demo.py`` is ``magsleep demo``;
``persons.py`` resolves who exists (settings and the device registry) for the dose service, the
API and the CLI; ``doses.py`` opens the dose service as one command uses it. Imports flow one
way: ``app/`` may use any domain package; no domain package imports ``app/``.
"""
