"""Supplement doses: entities and forms, the pure rules, the SQLite journal and the points it
queues, the service and its drain to InfluxDB, CLI/HTTP/phone logging (issue 5).

See docs/doses.md.
"""
