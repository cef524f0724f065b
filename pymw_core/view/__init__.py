"""Seeing a run: ``pymw watch`` (a live terminal view) and ``pymw report`` (an HTML page).

Both read only the run's journal (a read-only SQLite connection), never the master, so
they work on a finished run, a running one, and one whose master died.
"""
