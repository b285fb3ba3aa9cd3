"""Write the pip constraints file (the lock) from a virtual environment the suite passed in.

Usage: python tools/write_lock.py VENV_DIR LOCK_FILE

Local version labels are dropped (``torch==2.13.0+cpu`` -> ``torch==2.13.0``) so the same lock gives the CPU
wheel on CPU-only machines and the CUDA build where pip's index serves it; the project itself (editable) and pip
are left out. The file is written to a temporary name and renamed, so a failed run never leaves half a lock.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HEADER = """\
# The exact versions `make test` passed with (pip constraints file; `make` installs with `-c constraints.txt`).
# Regenerate with `make upgrade` (fresh venv, re-resolve from pyproject.toml's ranges, run the suite, rewrite).
# Written {date} by tools/write_lock.py on Python {python} ({machine}).
"""


def frozen(venv: Path) -> list[str]:
    out = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--all", "--exclude-editable"], check=True,
                         capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or " @ " in line or line.startswith("-e "):
            continue
        name = re.split(r"[=<>!~ ]", line, 1)[0].lower().replace("_", "-")
        if name in ("pip", "tower-cat"):
            continue
        lines.append(re.sub(r"\+[0-9A-Za-z.]+$", "", line))
    return sorted(lines, key=str.lower)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    venv, lock = Path(argv[0]), Path(argv[1])
    python = subprocess.run([str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                            check=True, capture_output=True, text=True).stdout.strip()
    text = HEADER.format(date=datetime.date.today().isoformat(), python=python, machine=platform.machine())
    text += "\n".join(frozen(venv)) + "\n"
    tmp = lock.with_name(lock.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, lock)
    print(f"{lock}: {text.count(chr(10)) - 3} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
