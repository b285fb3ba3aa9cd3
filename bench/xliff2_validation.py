"""What XLIFF 2 validation (formats/xliff2_rules.py) costs a load: generated files, CPU time with and without it.

    .venv/bin/python bench/xliff2_validation.py [--units 20000 80000] [--repeat 3]

Each unit has notes, a segment with <pc>, <ph>, <sc>/<ec> in source and target. Times are process CPU seconds
(best of --repeat), so other load on the machine does not skew the ratio; a linear validator keeps the overhead
column flat as the file grows.
"""

from __future__ import annotations

import argparse
import gc
import platform
import tempfile
import time
from pathlib import Path


def generate(path: Path, units: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0" srcLang="en" trgLang="de">'
                 '<file id="f">\n')
        for i in range(units):
            codes = '<pc id="1">b</pc><ph id="2"/><sc id="3"/>x<ec startRef="3"/>'
            fh.write(f'<unit id="u{i}"><notes><note id="n">note {i}</note></notes><segment id="s">'
                     f'<source>Text {i} {codes}</source><target>Tx {i} {codes}</target></segment></unit>\n')
        fh.write("</file></xliff>\n")


def best_cpu(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from tower_cat.formats import xliff2, xliff2_rules

    run_checks = xliff2_rules.Checker.run
    print(f"{platform.python_version()} on {platform.machine()}; CPU seconds, best of {args.repeat}\n")
    print("| units | load with validation | load without | validation overhead |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.units:
            path = Path(tmp) / f"{n}.xlf"
            generate(path, n)
            try:
                with_checks = best_cpu(lambda: xliff2.load(path), args.repeat)
                xliff2_rules.Checker.run = lambda self: None
                without = best_cpu(lambda: xliff2.load(path), args.repeat)
            finally:
                xliff2_rules.Checker.run = run_checks
            print(f"| {n:,} | {with_checks:.2f} s | {without:.2f} s | {100 * (with_checks / without - 1):+.0f} % |")


if __name__ == "__main__":
    main()
