"""Load + save of a generated 100 000-unit XLIFF 1.2: tower-cat next to translate-toolkit, in one run.

    .venv/bin/python bench/formats.py [--units 100000]
    .venv/bin/python bench/formats.py --tmx      # peak RSS of the streaming TMX reader, 10k..300k units
    .venv/bin/python bench/formats.py --memory [--memory-units 10000,100000,400000] [--json]
        # peak RSS of `tower-cat validate` / `pseudo` per file size, each in a fresh process

Both tools read the same file and write it back; tower-cat is also timed writing a target into every unit
(the real job), and the table prints ratios measured side by side.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import tempfile
import time
from pathlib import Path

WORDS = ("file folder note task board project reminder share sync archive member template dashboard settings "
         "account password language theme backup export import search filter sort device workspace").split()


def generate(path: Path, units: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                 '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
                 ' <file original="app.json" source-language="en-US" target-language="de-DE" datatype="plaintext">\n'
                 '  <body>\n')
        for g in range(0, units, 100):
            fh.write(f'   <group id="g{g // 100}" resname="screen{g // 100}">\n')
            for i in range(g, min(g + 100, units)):
                words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 14)))
                kind = i % 4
                if kind == 0:
                    src = f"Open the <g id=\"1\" ctype=\"bold\">{words}</g> now."
                elif kind == 1:
                    src = f"{words.capitalize()} <x id=\"1\" ctype=\"lb\"/>and {rnd.randint(2, 999)} more"
                elif kind == 2:
                    src = f"<bpt id=\"1\">&lt;a href=\"#\"&gt;</bpt>{words}<ept id=\"1\">&lt;/a&gt;</ept>"
                else:
                    src = words.capitalize() + "."
                fh.write(f'    <trans-unit id="u{i}" resname="key.{i}">\n'
                         f'     <source>{src}</source>\n')
                if i % 10 == 0:
                    fh.write(f'     <note>Shown on screen {g // 100}</note>\n')
                fh.write('    </trans-unit>\n')
            fh.write('   </group>\n')
        fh.write('  </body>\n </file>\n</xliff>\n')


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


TMX_RSS_SCRIPT = """
import resource, sys
from tower_cat.formats.tmx import iter_tmx
n = sum(1 for _ in iter_tmx(sys.argv[1]))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def generate_tmx(path: Path, units: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="en" creationtool="t" '
                 'creationtoolversion="1" datatype="plaintext" segtype="sentence" adminlang="en" o-tmf="t"/>\n<body>\n')
        for i in range(units):
            fh.write(f'<tu tuid="{i}"><tuv xml:lang="en"><seg>Sentence number {i} with a <ph>{{x}}</ph> placeholder '
                     f'and some more words to make it longer.</seg></tuv><tuv xml:lang="de"><seg>Satz Nummer {i} mit '
                     f'einem <ph>{{x}}</ph> Platzhalter und ein paar Wörtern mehr.</seg></tuv></tu>\n')
        fh.write("</body>\n</tmx>\n")


def tmx_stream_rss(sizes: tuple[int, ...] = (10_000, 60_000, 300_000)) -> None:
    """Peak RSS of the streaming TMX reader (``iter_tmx``) over growing files, each in a fresh process: libxml2's
    memory is invisible to tracemalloc, and the point is that the peak does not grow with the file."""
    import subprocess
    import sys

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            p = Path(tmp) / f"{n}.tmx"
            generate_tmx(p, n)
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", TMX_RSS_SCRIPT, str(p)], capture_output=True, text=True,
                                 check=True, cwd=Path(__file__).resolve().parents[1])
            secs = time.perf_counter() - start
            count, kb = map(int, res.stdout.split())
            assert count == n
            rows.append((n, p.stat().st_size, kb * 1024, secs))
    print(f"\niter_tmx peak RSS, one process per file, Python {platform.python_version()}")
    print(f"{'tus':>10}{'file MB':>10}{'peak RSS MB':>13}{'RSS growth vs first':>22}{'seconds':>9}")
    for n, size, rss, secs in rows:
        print(f"{n:>10,}{size / 1e6:>10.1f}{rss / 1e6:>13.1f}{(rss - rows[0][2]) / 1e6:>20.1f}MB{secs:>9.2f}")


# --- peak memory of `tower-cat validate` / `tower-cat pseudo` against the file size (issue 20 item 6) -------------

MEMORY_TARGET_X = 5.0  # the goal: peak memory under 5x the file size
DEFAULT_MEMORY_UNITS = (10_000, 100_000, 400_000)
BASELINE_UNITS = 10

# Runs the real CLI entry point in a fresh interpreter, then writes its own peak RSS to a side file (the CLI owns
# stdout). ru_maxrss counts libxml2's C allocations too, which tracemalloc cannot see.
CLI_RSS_SCRIPT = """
import json, resource, sys, time
report, argv = sys.argv[1], sys.argv[2:]
from tower_cat.cli import main
sys.argv = ["tower-cat", *argv]
start = time.perf_counter()
try:
    main(argv)
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
seconds = time.perf_counter() - start
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(report, "w", encoding="utf-8") as fh:
    json.dump({"exit": code, "seconds": seconds,
               "peak_rss_bytes": maxrss if sys.platform == "darwin" else maxrss * 1024}, fh)
sys.exit(code)
"""


def run_cli_measured(argv: list[str], report: Path) -> dict:
    """One ``tower-cat`` run in a fresh process: its exit code, seconds inside the CLI and peak RSS in bytes.

    A run that does not exit 0 raises: a benchmark that silently measures a crash is worthless."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    report.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", CLI_RSS_SCRIPT, str(report), *argv], capture_output=True,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(f"`tower-cat {' '.join(argv)}` exited {proc.returncode}, not 0; output:\n"
                           f"{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    measured = json.loads(report.read_text(encoding="utf-8"))
    if measured["exit"] != 0:  # never reached while the child passes its code on, kept for a child that does not
        raise RuntimeError(f"`tower-cat {' '.join(argv)}` exited {measured['exit']}, not 0; output:\n"
                           f"{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    return measured


def count_translated_units(path: Path) -> tuple[int, int]:
    """(trans-units, trans-units with a non-empty target) of an XLIFF 1.2 file, read streaming."""
    from lxml import etree

    units = with_target = 0
    for _, elem in etree.iterparse(str(path), events=("end",), tag="{*}trans-unit"):
        units += 1
        target = elem.find("{*}target")
        if target is not None and "".join(target.itertext()).strip():
            with_target += 1
        elem.clear(keep_tail=True)
        while elem.getprevious() is not None:
            del elem.getparent()[0]
    return units, with_target


def measure_memory(sizes: tuple[int, ...] = DEFAULT_MEMORY_UNITS) -> dict:
    """Peak RSS of `validate FILE` and `pseudo FILE -o OUT` per generated XLIFF size, each in a fresh process,
    beside a baseline run on a tiny file (interpreter + imports: what every run pays whatever the size)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = work / "rss.json"
        tiny = work / f"{BASELINE_UNITS}.xlf"
        generate(tiny, BASELINE_UNITS)
        base = run_cli_measured(["validate", str(tiny)], report)
        baseline = {"units": BASELINE_UNITS, "file_bytes": tiny.stat().st_size, "command": "validate",
                    "seconds": base["seconds"], "peak_rss_bytes": base["peak_rss_bytes"]}
        for units in sizes:
            src = work / f"{units}.xlf"
            out = work / f"{units}.pseudo.xlf"
            generate(src, units)
            size = src.stat().st_size
            for command, argv in (("validate", ["validate", str(src)]),
                                  ("pseudo", ["pseudo", str(src), "-o", str(out)])):
                measured = run_cli_measured(argv, report)
                if command == "pseudo":
                    if not out.exists():
                        raise RuntimeError(f"`tower-cat pseudo` exited 0 but wrote no {out}")
                    found, translated = count_translated_units(out)
                    if (found, translated) != (units, units):
                        raise RuntimeError(f"`tower-cat pseudo` wrote {out} with {found} trans-units, {translated} "
                                           f"with a target; expected {units} of each")
                    out.unlink()
                rss = measured["peak_rss_bytes"]
                rows.append({
                    "units": units, "file_bytes": size, "command": command, "seconds": round(measured["seconds"], 3),
                    "peak_rss_bytes": rss,
                    "rss_over_file": round(rss / size, 2),
                    "net_rss_over_file": round((rss - baseline["peak_rss_bytes"]) / size, 2),
                })
            src.unlink()
    for row in rows:
        row["under_target"] = row["rss_over_file"] < MEMORY_TARGET_X
        row["net_under_target"] = row["net_rss_over_file"] < MEMORY_TARGET_X
    return {"python": platform.python_version(), "target_x": MEMORY_TARGET_X, "baseline": baseline, "rows": rows}


def print_memory_table(result: dict) -> None:
    base = result["baseline"]
    target = result["target_x"]
    print(f"\ntower-cat peak RSS against file size, one fresh process per run, Python {result['python']}")
    print(f"baseline (validate on a {base['units']}-unit file: interpreter + imports): "
          f"{base['peak_rss_bytes'] / 1e6:.1f} MB peak RSS")
    print(f"{'units':>9}{'file MB':>9}  {'command':<9}{'seconds':>8}{'peak RSS MB':>13}{'RSS/file':>10}"
          f"{'(RSS-base)/file':>17}  under {target:g}x (total / net)")
    for r in result["rows"]:
        verdict = f"{'yes' if r['under_target'] else 'no'} / {'yes' if r['net_under_target'] else 'no'}"
        print(f"{r['units']:>9,}{r['file_bytes'] / 1e6:>9.1f}  {r['command']:<9}{r['seconds']:>8.2f}"
              f"{r['peak_rss_bytes'] / 1e6:>13.1f}{r['rss_over_file']:>9.2f}x{r['net_rss_over_file']:>16.2f}x"
              f"  {verdict}")
    rows = result["rows"]
    print(f"target: peak memory under {target:g}x the file size. Under it by total RSS: "
          f"{sum(r['under_target'] for r in rows)} of {len(rows)} rows; by RSS above the baseline: "
          f"{sum(r['net_under_target'] for r in rows)} of {len(rows)} rows.")


def parse_units(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated unit counts such as 10000,100000, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"expected positive unit counts, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--tmx", action="store_true", help="Only measure the streaming TMX reader's peak RSS.")
    ap.add_argument("--memory", action="store_true",
                    help="Only measure the peak RSS of `tower-cat validate` and `tower-cat pseudo` against file size.")
    ap.add_argument("--memory-units", type=parse_units, default=DEFAULT_MEMORY_UNITS, metavar="N,N,...",
                    help="Trans-unit counts of the generated files for --memory (default: 10000,100000,400000).")
    ap.add_argument("--json", action="store_true", help="With --memory: print the rows as JSON instead of a table.")
    args = ap.parse_args(argv)
    if (args.json or args.memory_units != DEFAULT_MEMORY_UNITS) and not args.memory:
        ap.error("--json and --memory-units go with --memory")
    if args.tmx:
        tmx_stream_rss()
        return
    if args.memory:
        result = measure_memory(args.memory_units)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_memory_table(result)
        return

    from translate.storage import xliff as ttk_xliff

    from tower_cat import formats
    from tower_cat.document import Segment

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.xlf"
        generate(src, args.units)
        size_mb = src.stat().st_size / 1e6

        def ours_noop():
            formats.load(src).save(Path(tmp) / "ours.xlf")

        def ours_edit():
            doc = formats.load(src)
            for unit in doc.units:
                unit.set_target(Segment(list(unit.source.parts)), status="needs-review", origin="mt")
            doc.save(Path(tmp) / "ours-edit.xlf")

        def ttk_noop():
            store = ttk_xliff.xlifffile.parsefile(str(src))
            store.savefile(str(Path(tmp) / "ttk.xlf"))

        def ttk_edit():  # the same job with translate-toolkit: inline codes of every source into its target
            store = ttk_xliff.xlifffile.parsefile(str(src))
            for unit in store.units:
                unit.rich_target = unit.rich_source
            store.savefile(str(Path(tmp) / "ttk-edit.xlf"))

        results = [
            ("translate-toolkit load+save", timed(ttk_noop)),
            ("tower-cat load+save", timed(ours_noop)),
            ("translate-toolkit load+write every target+save", timed(ttk_edit)),
            ("tower-cat load+write every target+save", timed(ours_edit)),
        ]
        identical = (Path(tmp) / "ours.xlf").read_bytes() == src.read_bytes()
        ttk_identical = (Path(tmp) / "ttk.xlf").read_bytes() == src.read_bytes()

    print(f"\n{args.units:,} trans-units, {size_mb:.1f} MB, Python {platform.python_version()}, "
          f"{platform.machine()}, 1 process")
    print(f"{'job':<50}{'seconds':>9}{'units/s':>11}{'vs ttk, same job':>18}")
    for i, (name, secs) in enumerate(results):
        base = results[i - i % 2][1]  # rows come in pairs: translate-toolkit, then tower-cat doing the same
        print(f"{name:<50}{secs:>9.2f}{args.units / secs:>11,.0f}{base / secs:>17.2f}x")
    print(f"no-op output byte-identical: tower-cat {identical}, translate-toolkit {ttk_identical}")


if __name__ == "__main__":
    main()
