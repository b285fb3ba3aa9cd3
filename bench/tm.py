"""Translation-memory benchmark: generate a TMX, import it, time fuzzy lookups.

    python bench/tm.py                 # 200 000 units, 500 queries
    python bench/tm.py --units 20000   # quicker

Prints import time, rate and peak RSS, then lookup latency p50/p95/max over near-duplicates of stored sources
and novel sentences, plus how often the near-duplicate's original came back as the top match. The generated
sentences are deterministic (seeded), varied (templates over a few hundred words, numbers, placeholders and
inline codes) and come with a pseudo-German target.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOUNS = """account address agenda alarm album answer app archive attachment backup badge banner board
bookmark browser budget button cache calendar camera card category channel chart checklist client clipboard
column comment computer connection contact content contract copy counter dashboard database date deadline
default delivery description device dialog directory document domain download draft driver editor email
entry error event export feature feedback field file filter folder font form format gallery group guide
header heading history icon image import inbox index invoice item keyboard label language layout license
link list location log login member menu message method milestone mode module network note notebook
notification number option order owner package page panel password payment permission phone photo plan
policy preview printer priority profile project proxy query queue quota record reminder report request
resource result role rule schedule screen script search section selection server session setting share
shortcut signature size slide snapshot source space status storage style subscription summary support
survey symbol table tag task team template text theme thread ticket timeline timer title token tool
topic tracker transfer trash update upload user version video view volume warning website widget window
workflow workspace zone""".split()
ADJS = """active archived automatic available basic blank blocked broken changed closed common complete
current custom daily default deleted detailed different disabled draft duplicate empty encrypted entire
existing expired external failed final first free full global hidden important inactive incomplete
internal invalid large last latest linked local locked main manual missing monthly new next offline old
online open optional original outdated pending personal previous primary private public recent related
remote required saved scheduled secure selected shared short simple single small temporary unread
unsaved updated urgent valid visible weekly""".split()
VERBS = [("add", "added"), ("archive", "archived"), ("assign", "assigned"), ("block", "blocked"),
         ("change", "changed"), ("check", "checked"), ("close", "closed"), ("copy", "copied"),
         ("create", "created"), ("delete", "deleted"), ("disable", "disabled"), ("download", "downloaded"),
         ("edit", "edited"), ("enable", "enabled"), ("export", "exported"), ("find", "found"),
         ("hide", "hidden"), ("import", "imported"), ("install", "installed"), ("load", "loaded"),
         ("lock", "locked"), ("merge", "merged"), ("move", "moved"), ("open", "opened"), ("print", "printed"),
         ("publish", "published"), ("remove", "removed"), ("rename", "renamed"), ("reset", "reset"),
         ("restore", "restored"), ("save", "saved"), ("schedule", "scheduled"), ("select", "selected"),
         ("send", "sent"), ("share", "shared"), ("sort", "sorted"), ("sync", "synced"), ("unlock", "unlocked"),
         ("update", "updated"), ("upload", "uploaded"), ("verify", "verified"), ("view", "viewed")]
PREPS = "to from in into for with on under next to".split(" ")
ADVS = """automatically again carefully correctly immediately later manually now only permanently quickly
safely successfully temporarily today""".split()
TEMPLATES = [
    "{V} the {a} {n}.",
    "{V} the {a} {n} {p} the {n2}.",
    "The {n} has been {pp} {adv}.",
    "The {a} {n} could not be {pp}.",
    "Do you want to {v} this {n}?",
    "You can {v} up to {num} {n}s {p} each {n2}.",
    "Error {num}: the {n} could not be {pp} because the {n2} is {a}.",
    "Select a {n} to {v} it {adv}.",
    "{num} {n}s were {pp} {p} the {a} {n2}.",
    "Click {b}{V}{/b} to {v} the {n} {adv}.",
    "The {n} {ph} was {pp} by {ph2}.",
    "Your {a} {n} will be {pp} in {num} days.",
    "Are you sure you want to {v} the {a} {n} and all its {n2}s?",
    "To {v} a {n}, open the {n2} menu and choose {b}{V} {n}{/b}.",
    "This {n} is {a}; {v} it before you {v2} the {n2}.",
    "Only members with the {a} role can {v} {n}s {p} this {n2}.",
    "The {n} size is limited to {num} MB per {n2}.",
    "{V} {n}",
    "{A} {n}s",
    "No {a} {n}s found.",
]
DE = {"the": "die", "a": "ein", "to": "zu", "is": "ist", "was": "wurde", "has": "hat", "been": "worden",
      "you": "Sie", "can": "können", "and": "und", "this": "dies", "could": "konnte", "not": "nicht",
      "be": "sein", "by": "von", "in": "in", "for": "für", "with": "mit", "on": "auf", "from": "von",
      "each": "jede", "your": "Ihr", "will": "wird", "days": "Tage", "error": "Fehler", "all": "alle"}


def sentence(rng: random.Random) -> tuple[str, str]:
    """(English source XML, pseudo-German target XML) with <bpt>/<ept> and <ph> codes where the template has them."""
    tpl = rng.choice(TEMPLATES)
    v, pp = rng.choice(VERBS)
    v2, _ = rng.choice(VERBS)
    values = {"v": v, "V": v.capitalize(), "pp": pp, "v2": v2, "n": rng.choice(NOUNS), "n2": rng.choice(NOUNS),
              "a": rng.choice(ADJS), "A": rng.choice(ADJS).capitalize(), "p": rng.choice(PREPS),
              "adv": rng.choice(ADVS), "num": str(rng.choice([1, 2, 3, 5, 10, 12, 25, 50, 100, 250, 1000,
                                                              rng.randint(2, 9999)]))}
    text = tpl
    for key in sorted(values, key=len, reverse=True):
        text = text.replace("{" + key + "}", values[key])
    src = escape(text).replace("{b}", '<bpt i="1">&lt;b&gt;</bpt>').replace("{/b}", '<ept i="1">&lt;/b&gt;</ept>')
    src = src.replace("{ph2}", '<ph x="2">{user}</ph>').replace("{ph}", '<ph x="1">{name}</ph>')
    words = []
    for w in text.split(" "):
        core = w.strip(".,;:?!")
        tail = w[len(core):] if w.startswith(core) else ""
        de = DE.get(core.lower(), core[::-1].capitalize() if core.isalpha() and core.islower() else core)
        words.append(de + tail)
    tgt_text = " ".join(words)
    tgt = escape(tgt_text).replace("{b}", '<bpt i="1">&lt;b&gt;</bpt>').replace(
        "{/b}", '<ept i="1">&lt;/b&gt;</ept>')
    tgt = tgt.replace("{ph2}", '<ph x="2">{user}</ph>').replace("{ph}", '<ph x="1">{name}</ph>')
    return src, tgt


def plain(xml_seg: str) -> str:
    import re
    from xml.sax.saxutils import unescape

    return unescape(re.sub(r"<(bpt|ept|ph)[^>]*>.*?</\1>", "", xml_seg))


def write_tmx(path: Path, units: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4">\n  <header creationtool="bench" '
                 'creationtoolversion="1" datatype="plaintext" segtype="sentence" adminlang="en-US" '
                 'srclang="en-US" o-tmf="bench"/>\n  <body>\n')
        for i in range(units):
            src, tgt = sentence(rng)
            fh.write(f'    <tu tuid="b{i}" creationdate="20240101T000000Z">\n'
                     f'      <tuv xml:lang="en-US"><seg>{src}</seg></tuv>\n'
                     f'      <tuv xml:lang="de-DE"><seg>{tgt}</seg></tuv>\n    </tu>\n')
        fh.write("  </body>\n</tmx>\n")


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    op = rng.randrange(4)
    if op == 0 and len(words) > 3:  # drop a word
        del words[rng.randrange(len(words))]
    elif op == 1:  # replace a word
        words[rng.randrange(len(words))] = rng.choice(NOUNS + ADJS)
    elif op == 2:  # typo
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 3:
            j = rng.randrange(len(w) - 1)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    else:  # a number changes or one is added
        words.append(str(rng.randint(2, 99)))
    return " ".join(words)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--tracemalloc", action="store_true", help="also measure the Python heap peak of the import "
                    "(slower)")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from tower_cat.tm import TranslationMemory, normalize_text

    console = Console()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tower-cat-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tmx = work / f"bench-{args.units}.tmx"
    db = work / f"bench-{args.units}.sqlite"
    for p in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm")):
        p.unlink(missing_ok=True)
    t = time.perf_counter()
    write_tmx(tmx, args.units)
    gen_s = time.perf_counter() - t
    rss_before = rss_mb()

    if args.tracemalloc:
        tracemalloc.start()
    t = time.perf_counter()
    with TranslationMemory(db) as tm:
        stats = tm.import_file(tmx)
    import_s = time.perf_counter() - t
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()
    rss_after = rss_mb()

    # queries: half near-duplicates of stored sources, half novel sentences
    rng = random.Random(7)
    stored = [plain(sentence(rng)[0]) for _ in range(min(args.units, 50_000))]
    qrng = random.Random(11)
    novel_rng = random.Random(12345)
    queries: list[tuple[str, str, str | None]] = []
    for i in range(args.queries):
        if i % 2 == 0:
            orig = qrng.choice(stored)
            queries.append(("near-duplicate", perturb(orig, qrng), orig))
        else:
            queries.append(("novel", plain(sentence(novel_rng)[0]) + " " + qrng.choice(ADVS), None))
    lat: dict[str, list[float]] = {"near-duplicate": [], "novel": []}
    cpu: list[float] = []
    found = near = 0
    with TranslationMemory(db, readonly=True) as tm:
        tm.lookup("warm up the cache", "en", "de")
        for kind, q, orig in queries:
            t, c = time.perf_counter(), time.process_time()
            matches = tm.lookup(q, "en-US", "de-DE", limit=5, min_score=70)
            lat[kind].append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            if orig is not None:
                # the best possible answer: the original, or another stored source at least as similar
                best = tm._text_score(normalize_text(q), normalize_text(orig), 0)[0]
                if best >= 70:
                    near += 1
                    found += bool(matches) and matches[0].similarity >= best - 1e-9
        db_mb = sum(p.stat().st_size for p in work.glob(db.name + "*")) / 2**20

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

    table = Table(title=f"tower-cat TM benchmark ({args.units:,} units, {os.cpu_count()} CPUs)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("TMX generated", f"{tmx.stat().st_size / 2**20:,.1f} MB in {gen_s:.1f} s")
    table.add_row("import time", f"{import_s:,.1f} s ({stats.units / import_s:,.0f} units/s)")
    table.add_row("entries added", f"{stats.added:,} ({stats.updated:,} duplicates merged)")
    table.add_row("database size (with WAL)", f"{db_mb:,.1f} MB")
    table.add_row("peak RSS before import", f"{rss_before:,.0f} MB")
    table.add_row("peak RSS after import", f"{rss_after:,.0f} MB")
    if heap_peak is not None:
        table.add_row("tracemalloc peak (import)", f"{heap_peak:,.1f} MB")
    all_lat = lat["near-duplicate"] + lat["novel"]
    for kind, values in (("near-duplicate", lat["near-duplicate"]), ("novel", lat["novel"]), ("all", all_lat)):
        table.add_row(f"lookup {kind} p50 / p95 / max",
                      f"{statistics.median(values):.1f} / {pct(values, 95):.1f} / {max(values):.1f} ms")
    table.add_row("lookup CPU time p50 / p95", f"{statistics.median(cpu):.1f} / {pct(cpu, 95):.1f} ms")
    table.add_row("near-duplicates: top-1 as similar as the original",
                  f"{found}/{near} ({100 * found / max(near, 1):.1f} %)")
    table.add_row("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}")
    console.print(table)
    goal = pct(all_lat, 95) < 50
    console.print(f"goal p95 < 50 ms: {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
