"""kdumpd: keeps the kdump crash kernel current across CPU and memory hotplug."""

__version__ = "0.1.0"
