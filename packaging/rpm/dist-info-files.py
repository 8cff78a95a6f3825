#!/usr/bin/env python3
"""The dist-info lines of %pyproject_save_files for the Debian stand-in macros: the
directory, each file, and the wheel's License-File entries marked %license (as Fedora's
macro does); with -l, fail when the wheel names no License-File.

Usage: dist-info-files.py BUILDROOT SITELIB [-l]
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    buildroot, sitelib = Path(sys.argv[1]), sys.argv[2]
    need_license = "-l" in sys.argv[3:]
    (info,) = (buildroot / sitelib.lstrip("/")).glob("*.dist-info")
    names = [line.split(":", 1)[1].strip()
             for line in (info / "METADATA").read_text().splitlines()
             if line.startswith("License-File:")]
    licensed = {info / name for name in names} | {info / "licenses" / name for name in names}
    print(f"%dir /{info.relative_to(buildroot)}")
    marked = 0
    for path in sorted(p for p in info.rglob("*") if p.is_file()):
        line = f"/{path.relative_to(buildroot)}"
        if path in licensed:
            line, marked = f"%license {line}", marked + 1
        print(line)
    if need_license and not marked:
        print("pyproject_save_files -l: the wheel names no License-File", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
