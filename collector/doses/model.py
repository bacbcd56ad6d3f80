"""The old name of :mod:`collector.doses.entities`, kept only until its last importer
(``collector/mqtt/reminders.py``, whose owner has edits in flight) imports the new one."""

from collector.doses.entities import Assignment, PlanToday

__all__ = ["Assignment", "PlanToday"]
