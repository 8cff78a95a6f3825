"""kdumpd benchmark: exposure and reloads of kdumpd and the two behaviours it replaces.

``python -m bench`` (``make bench``) runs every scenario against real kernel uevents through
a real systemd-udevd and writes ``bench/RESULTS.md``; ``--quick`` runs a subset in under a
minute. Pure parts (measurement, scenarios, report) are in their own modules and tested by
``bench/test_*.py``.
"""
