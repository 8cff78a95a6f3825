"""MESSAGE_ID values, one per kind of message, for `journalctl MESSAGE_ID=...`.

They never change once released: admins and tests filter on them.
"""

RELOAD_DONE = "5a3e2172d2c74e88b7b24542a457f44b"
RELOAD_FAILED = "8c37c54d3cc848b7a1565d0accff910d"
SKIPPED = "f645b1d272634a9a9fb84cf7d493a030"
CRASH_KERNEL_UNLOADED = "47be2d42db9a496cb881b2d6a2f855b0"
WOULD_RELOAD = "7be88d9674664876a78c9e6937c85bcf"
EVENTS_LOST = "f21d290080c84e01af2044ac77d25574"
RULE_CHANGED = "5f1632b6351f4f91802dee725c6d7161"
KERNEL_SKIPPED = "3d234a8af5174a85b55029049cec671b"  # the kernel skipped a header update
CAPACITY_SHORT = "0b1f6a3e9d2c4f57a8e1c6b5d4f3a2e1"  # the reservation is short for the RAM now
KERNEL_READ_REFUSED = "9e41c7b05a2d4c1f8f63d2a7b8e05c14"  # the line of a crash_hotplug read
HEADER_UNFIXABLE = "b7c2e49a1f0d4e6c9a35d8f1e2c7b604"  # a header no load can make current
