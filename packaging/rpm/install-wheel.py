#!/usr/bin/env python3
"""Install a wheel the way Fedora's %pyproject_install lays it out, for the Debian build.

Debian's python3-installer follows Debian's layout (/usr/lib/python3/dist-packages or
/usr/local); Fedora installs into /usr/lib/python3.X/site-packages. Only with Fedora's
layout does rpm's own python dependency generator (pythondistdeps.py, run on
``site-packages/*.dist-info``) add the ``python3dist(...)`` requires Fedora's packages
get. Used by packaging/rpm/compat.macros only where Fedora's macros are missing.

Usage: install-wheel.py DESTDIR PREFIX WHEEL
"""

from __future__ import annotations

import sys
import sysconfig

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main() -> int:
    destdir, prefix, wheel = sys.argv[1:4]
    paths = sysconfig.get_paths(scheme="posix_prefix", vars={"base": prefix, "platbase": prefix})
    scheme = {"purelib": paths["purelib"], "platlib": paths["platlib"],
              "headers": paths["include"], "scripts": paths["scripts"], "data": paths["data"]}
    destination = SchemeDictionaryDestination(
        scheme, interpreter="/usr/bin/python3", script_kind="posix", destdir=destdir)
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"rpm"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
