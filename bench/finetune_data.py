"""Time and peak memory of `tower-cat finetune data` on synthetic client memories of growing size.

    .venv/bin/python bench/finetune_data.py                 # 100k and 1M units
    .venv/bin/python bench/finetune_data.py 100000 300000   # chosen sizes
    .venv/bin/python bench/finetune_data.py --keep DIR ...  # keep the TMX files and outputs in DIR

Each size gets a synthetic en→de TMX written as a stream (seeded, deterministic): UI strings and sentences
built from templates over a vocabulary, about one in six with inline codes (<bpt>/<ept>, <ph>), one in four
with an x-context prop, about 3 % exact repeats (which the cleaning step drops). The command then runs in a
child process exactly as a user runs it (with the sample glossary, so terminology examples are built, and
the few-shot memory) and the table reports wall time, peak RSS of the child (ru_maxrss) and the rates; time
per unit should stay flat as the memory grows (the data step streams; only ~60 bytes of hashes per pair
stay in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
_cpu_before = 0.0

VERBS = [("Open", "Öffnen Sie"), ("Save", "Speichern Sie"), ("Delete", "Löschen Sie"), ("Share", "Teilen Sie"),
         ("Export", "Exportieren Sie"), ("Print", "Drucken Sie"), ("Rename", "Benennen Sie"), ("Move", "Verschieben Sie"),
         ("Copy", "Kopieren Sie"), ("Archive", "Archivieren Sie"), ("Restore", "Stellen Sie"), ("Pin", "Heften Sie"),
         ("Sync", "Synchronisieren Sie"), ("Lock", "Sperren Sie"), ("Tag", "Markieren Sie"), ("Sort", "Sortieren Sie")]
OBJECTS = [("note", "Notiz"), ("notebook", "Notizbuch"), ("folder", "Ordner"), ("file", "Datei"),
           ("attachment", "Anhang"), ("image", "Bild"), ("table", "Tabelle"), ("list", "Liste"),
           ("reminder", "Erinnerung"), ("tag", "Schlagwort"), ("page", "Seite"), ("template", "Vorlage"),
           ("sketch", "Skizze"), ("link", "Link"), ("comment", "Kommentar"), ("draft", "Entwurf"),
           ("account", "Konto"), ("backup", "Sicherung"), ("workspace", "Arbeitsbereich"), ("calendar", "Kalender")]
ADJECTIVES = [("selected", "ausgewählte"), ("shared", "geteilte"), ("new", "neue"), ("old", "alte"),
              ("current", "aktuelle"), ("locked", "gesperrte"), ("archived", "archivierte"), ("first", "erste"),
              ("last", "letzte"), ("empty", "leere"), ("large", "große"), ("recent", "neueste")]
PLACES = [("in the sidebar", "in der Seitenleiste"), ("from the menu", "über das Menü"),
          ("on this device", "auf diesem Gerät"), ("in the cloud", "in der Cloud"), ("before you leave", "bevor Sie gehen"),
          ("after the update", "nach dem Update"), ("with your team", "mit Ihrem Team"), ("for later", "für später"),
          ("in the web app", "in der Web-App"), ("on your phone", "auf Ihrem Telefon"),
          ("when the sync ends", "wenn die Synchronisierung endet"), ("from the archive", "aus dem Archiv")]
SYLLABLES = ["ka", "lo", "mi", "ter", "van", "sol", "dra", "pen", "qui", "rox", "bel", "tum", "nor", "zia", "fex",
             "gal", "hep", "jor", "lum", "syn"]
# product and feature names, as a real memory has tens of thousands of distinct words
def _names(n: int = 40000) -> list[str]:
    rng = random.Random(12345)
    return sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 5))).capitalize() for _ in range(n)})


NAMES = _names()
CONTEXTS = ["Menu bar", "Toolbar", "Settings", "Dialog title", "Button", "Tooltip", "Error message", "Help center"]


def synthetic_unit(i: int, rng: random.Random) -> tuple[str, str, str | None]:
    """(en, de, x-context) with TMX inline markup already in place."""
    v, o, a, p = rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ADJECTIVES), rng.choice(PLACES)
    o2 = rng.choice(OBJECTS)
    name = rng.choice(NAMES)
    o = (f"{name} {o[0]}", f"{name}-{o[1]}")
    n = rng.randint(2, 999)
    shape = rng.randrange(6)
    if shape == 0:  # short UI string
        en, de = f"{v[0]} {o[0]}", f"{o[1]} {v[1].split()[0].lower()}"
    elif shape == 1:  # bold span
        en = (f'{v[0]} the <bpt i="1">&lt;b&gt;</bpt>{a[0]} {o[0]}<ept i="1">&lt;/b&gt;</ept> {p[0]} '
              f"({n} {o2[0]}s).")
        de = (f'{v[1]} die <bpt i="1">&lt;b&gt;</bpt>{a[1]} {o[1]}<ept i="1">&lt;/b&gt;</ept> {p[1]} '
              f"({n} {o2[1]}).")
    elif shape == 2:  # placeholder
        en = f'{v[0]} <ph x="1">{{count}}</ph> {a[0]} {o[0]}s {p[0]} — step {n}.'
        de = f'{v[1]} <ph x="1">{{count}}</ph> {a[1]}n {o[1]} {p[1]} – Schritt {n}.'
    else:
        en = f"{v[0]} the {a[0]} {o[0]} and the {o2[0]} {p[0]}; {n} items are waiting (#{i % 7919})."
        de = f"{v[1]} die {a[1]} {o[1]} und {o2[1]} {p[1]}; {n} Elemente warten (#{i % 7919})."
    ctx = rng.choice(CONTEXTS) if rng.random() < 0.25 else None
    return en, de, ctx


def write_tmx(path: Path, units: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4">\n'
                 '<header creationtool="bench" creationtoolversion="1" segtype="sentence" o-tmf="x" adminlang="en" '
                 'srclang="en-US" datatype="plaintext"/>\n<body>\n')
        last = None
        for i in range(units):
            if last is not None and rng.random() < 0.03:
                en, de, ctx = last   # an exact repeat
            else:
                en, de, ctx = last = synthetic_unit(i, rng)
            prop = f'<prop type="x-context">{escape(ctx)}</prop>' if ctx else ""
            fh.write(f'<tu tuid="u{i}">{prop}<tuv xml:lang="en-US"><seg>{en}</seg></tuv>'
                     f'<tuv xml:lang="de-DE"><seg>{de}</seg></tuv></tu>\n')
        fh.write("</body>\n</tmx>\n")
    return path


def run_data(tmx: Path, out: Path, extra: list[str] = ()) -> dict:
    """`tower-cat finetune data` in a child process: wall seconds, the child's peak RSS, its statistics."""
    cmd = [str(Path(sys.executable).parent / "tower-cat"), "finetune", "data", "--tm", str(tmx), "--source", "en",
           "--target", "de", "--glossary", str(ROOT / "samples" / "glossary.tbx"), "--out", str(out), "--json", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    global _cpu_before
    _cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"finetune data failed ({proc.returncode}):\n{stderr[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - _cpu_before
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": usage.ru_maxrss / 1024,  # largest child so far
            "stats": json.loads(stdout)["stats"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--keep", type=Path, default=None, help="keep the TMX files and outputs here")
    ap.add_argument("--few-shot", type=int, default=None,
                    help="pass --few-shot N to `finetune data` (0: no TM search, the costly part on few cores)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-finetune-data-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the sizes smallest first
    for units in sorted(args.sizes):
        tmx = root / f"synthetic-{units}.tmx"
        t = time.perf_counter()
        if not tmx.is_file():
            write_tmx(tmx, units)
        gen = time.perf_counter() - t
        extra = ["--few-shot", str(args.few_shot)] if args.few_shot is not None else []
        r = run_data(tmx, root / f"out-{units}", extra)
        s = r["stats"]
        row = {"units": units, "few_shot": args.few_shot if args.few_shot is not None else 3, "tmx_mb": tmx.stat().st_size / 1e6, "generate_s": gen, **r,
               "train": sum(s["train"].values()), "sft": sum(s["tasks"].values()), "cpt": sum(s["cpt"].values())}
        rows.append(row)
        print(f"{units:>9,} units  {row['tmx_mb']:7.1f} MB TMX  {r['seconds']:8.1f} s  "
              f"CPU {r['cpu_seconds']:8.1f} s  {1e6 * r['cpu_seconds'] / units:7.1f} CPU µs/unit  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              f"train {row['train']:,}  SFT {row['sft']:,}  CPT {row['cpt']:,}", flush=True)
    print("\n| units | few-shot | TMX MB | wall s | CPU s | CPU µs per unit | peak RSS MB | train pairs | SFT examples | CPT docs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['units']:,} | {r['few_shot']} | {r['tmx_mb']:.0f} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
              f"{1e6 * r['cpu_seconds'] / r['units']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['train']:,} | {r['sft']:,} | {r['cpt']:,} |")
    (root / "bench.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
