"""Managing the crash_hotplug skip block in the distribution's kdump udev rules."""
