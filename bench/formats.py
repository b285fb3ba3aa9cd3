"""Load + save of a generated 100 000-unit XLIFF 1.2: tower-cat next to translate-toolkit, in one run.

    .venv/bin/python bench/formats.py [--units 100000] [--repeat 1]
    .venv/bin/python bench/formats.py --tmx      # peak RSS of the streaming TMX reader, 10k..300k units

Both tools read the same file and write it back; tower-cat is also timed writing a target into every unit
(the real job), and the table prints ratios measured side by side.
"""

from __future__ import annotations

import argparse
import gc
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=100_000)
    ap.add_argument("--tmx", action="store_true", help="Only measure the streaming TMX reader's peak RSS.")
    args = ap.parse_args()
    if args.tmx:
        tmx_stream_rss()
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
