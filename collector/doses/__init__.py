"""Supplement doses: model, validation, SQLite journal, CLI/HTTP/phone logging (issue 5).

See docs/doses.md.
"""
