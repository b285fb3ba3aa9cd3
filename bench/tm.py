"""Translation-memory benchmark: generate a TMX, import it, time fuzzy lookups — SQLite, and PostgreSQL beside
it in the same run when given.

    python bench/tm.py                                        # SQLite, 200 000 units, 500 queries
    python bench/tm.py --tm postgresql://me@127.0.0.1/tmbench  # SQLite and PostgreSQL (an empty database)
    python bench/tm.py --units 20000                          # quicker

Prints, per backend, import time and rate, then lookup latency p50/p95/max over near-duplicates of stored
sources and novel sentences, how often the near-duplicate's original (or something as similar) came back as the
top match, and how often PostgreSQL's top match agrees with SQLite's (the same source, or a tie in score). The
generated sentences are deterministic (seeded), varied (templates over a few hundred words, numbers,
placeholders and inline codes) and come with a pseudo-German target.
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


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def make_queries(units: int, count: int) -> list[tuple[str, str, str | None]]:
    """(kind, query, the stored source it was made from or None): half near-duplicates, half novel sentences."""
    rng = random.Random(7)
    stored = [plain(sentence(rng)[0]) for _ in range(min(units, 50_000))]
    qrng = random.Random(11)
    novel_rng = random.Random(12345)
    queries: list[tuple[str, str, str | None]] = []
    for i in range(count):
        if i % 2 == 0:
            orig = qrng.choice(stored)
            queries.append(("near-duplicate", perturb(orig, qrng), orig))
        else:
            queries.append(("novel", plain(sentence(novel_rng)[0]) + " " + qrng.choice(ADVS), None))
    return queries


def run_backend(name: str, open_tm, tmx: Path, queries, tracemalloc_on: bool) -> dict:
    """Import the TMX and run the queries on one backend; the numbers for the table."""
    from tower_cat.tm import normalize_text, text_score

    out: dict = {"name": name}
    rss_before = rss_mb()
    if tracemalloc_on:
        tracemalloc.start()
    t = time.perf_counter()
    with open_tm(False) as tm:
        if len(tm):
            raise SystemExit(f"{name}: the TM is not empty ({len(tm):,} entries); give an empty one")
        stats = tm.import_file(tmx)
    out["import_s"] = time.perf_counter() - t
    out["stats"] = stats
    out["heap_peak"] = tracemalloc.get_traced_memory()[1] / 2**20 if tracemalloc_on else None
    if tracemalloc_on:
        tracemalloc.stop()
    out["rss"] = (rss_before, rss_mb())
    lat: dict[str, list[float]] = {"near-duplicate": [], "novel": []}
    cpu: list[float] = []
    tops: list[tuple[str, float] | None] = []
    found = near = 0
    with open_tm(True) as tm:
        tm.lookup("warm up the cache", "en", "de")
        for kind, q, orig in queries:
            t, c = time.perf_counter(), time.process_time()
            matches = tm.lookup(q, "en-US", "de-DE", limit=5, min_score=70)
            lat[kind].append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            tops.append((normalize_text(matches[0].source.text), matches[0].score) if matches else None)
            if orig is not None:
                # the best possible answer: the original, or another stored source at least as similar
                best = text_score(normalize_text(q), normalize_text(orig), 0)[0]
                if best >= 70:
                    near += 1
                    found += bool(matches) and matches[0].similarity >= best - 1e-9
        out["size_mb"] = tm.size_mb()
    out.update(lat=lat, cpu=cpu, tops=tops, found=found, near=near)
    return out


def agreement(a: list, b: list) -> tuple[int, int]:
    """Queries whose top match is the same in both runs (the same source, or an equal score: a tie broken
    differently), and the number of queries."""
    same = 0
    for x, y in zip(a, b):
        if x is None or y is None:
            same += x is None and y is None
        else:
            same += x[0] == y[0] or abs(x[1] - y[1]) < 1e-6
    return same, len(a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--tm", dest="pg_url", default=None, metavar="URL",
                    help="also run on this PostgreSQL TM (postgresql://…, an empty database), beside SQLite")
    ap.add_argument("--tracemalloc", action="store_true", help="also measure the Python heap peak of the import "
                    "(slower)")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from tower_cat.tm import TranslationMemory

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
    queries = make_queries(args.units, args.queries)

    def open_sqlite(readonly: bool):
        tm = TranslationMemory(db, readonly=readonly)
        tm.size_mb = lambda: sum(p.stat().st_size for p in work.glob(db.name + "*")) / 2**20
        return tm

    runs = [run_backend("SQLite", open_sqlite, tmx, queries, args.tracemalloc)]
    if args.pg_url:
        from tower_cat.tm_postgres import PostgresTranslationMemory

        def open_pg(readonly: bool):
            tm = PostgresTranslationMemory(args.pg_url, readonly=readonly)
            tm.size_mb = lambda: tm.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20
            return tm

        runs.append(run_backend("PostgreSQL", open_pg, tmx, queries, args.tracemalloc))

    table = Table(title=f"tower-cat TM benchmark ({args.units:,} units, {len(queries)} queries, "
                        f"{os.cpu_count()} CPUs; TMX {tmx.stat().st_size / 2**20:,.1f} MB made in {gen_s:.1f} s)")
    table.add_column("measure")
    for r in runs:
        table.add_column(r["name"], justify="right")

    def row(label: str, fn) -> None:
        table.add_row(label, *(fn(r) for r in runs))

    row("import time", lambda r: f"{r['import_s']:,.1f} s")
    row("import rate", lambda r: f"{r['stats'].units / r['import_s']:,.0f} units/s")
    row("entries added", lambda r: f"{r['stats'].added:,} ({r['stats'].updated:,} merged)")
    row("database size", lambda r: f"{r['size_mb']:,.1f} MB")
    row("peak RSS before / after import", lambda r: f"{r['rss'][0]:,.0f} / {r['rss'][1]:,.0f} MB")
    if args.tracemalloc:
        row("tracemalloc peak (import)", lambda r: f"{r['heap_peak']:,.1f} MB")
    for kind in ("near-duplicate", "novel", "all"):
        def lat(r, kind=kind):
            values = r["lat"]["near-duplicate"] + r["lat"]["novel"] if kind == "all" else r["lat"][kind]
            return f"{statistics.median(values):.1f} / {pct(values, 95):.1f} / {max(values):.1f} ms"
        row(f"lookup {kind} p50 / p95 / max", lat)
    row("lookup CPU time (client) p50 / p95",
        lambda r: f"{statistics.median(r['cpu']):.1f} / {pct(r['cpu'], 95):.1f} ms")
    row("near-duplicates: top-1 as similar as the original",
        lambda r: f"{r['found']}/{r['near']} ({100 * r['found'] / max(r['near'], 1):.1f} %)")
    if len(runs) > 1:
        same, total = agreement(runs[0]["tops"], runs[1]["tops"])
        table.add_row("top-1 agreement with SQLite", "", f"{same}/{total} ({100 * same / total:.1f} %)")
    table.add_row("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}", *([""] * (len(runs) - 1)))
    console.print(table)
    for r in runs:
        values = r["lat"]["near-duplicate"] + r["lat"]["novel"]
        console.print(f"{r['name']}: goal lookup p95 < 50 ms: {'met' if pct(values, 95) < 50 else 'NOT met'}")
    if len(runs) > 1:
        console.print(f"PostgreSQL: goal top-1 agreement >= 98 %: {'met' if same / total >= 0.98 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
