"""``tower-cat tm`` (translation memory) and ``tower-cat terms`` (glossary compliance) commands.

    tower-cat tm import FILE... --db tm.sqlite [--source en-US] [--target de-DE]
    tower-cat tm lookup "text" --db tm.sqlite --source en --target de [--json] [--min-score 70] [--limit 5]
    tower-cat tm export --db tm.sqlite -o out.tmx [--source en-US] [--target de-DE]
    tower-cat tm stats --db tm.sqlite

``--db`` (alias ``--tm``) is a SQLite TM file or a ``postgresql://`` URL (a team TM); without it,
``$TOWER_CAT_TM_URL``. ``lookup`` and ``export`` also read a TMX directly.
    tower-cat terms check FILE --glossary glossary.tbx [--source ..] [--target ..] [--json]

Duplicates on import (see ``tower_cat.tm``): the same source + target + languages is stored once (its timestamp
moves forward); the same source with a different target is kept as a second entry, most recent first. An
interrupted import of an unchanged file resumes after the last committed batch when run again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _console(err: bool = False):
    from tower_cat.cli import console

    return console(stderr=err)


_DB_HELP = ("TM database: a SQLite file, or a postgresql:// URL (default: $TOWER_CAT_TM_URL)")


def _tm_spec(db: str | None) -> str:
    """--db, else $TOWER_CAT_TM_URL, else a usage error."""
    from tower_cat.tm import TM_URL_ENV, translation_memory_spec

    spec = translation_memory_spec(db)
    if spec is None:
        raise click.UsageError(f"give the TM with --db (a database file or a postgresql:// URL) or set {TM_URL_ENV}")
    return str(spec)



@click.group("tm")
def tm() -> None:
    """Translation memory: import TMX/XLIFF/PO, look up matches, export TMX."""


@tm.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "--tm", "db", metavar="DB|URL", help=_DB_HELP)
@click.option("--source", "src", help="Source language (picks it in a multilingual TMX; required when a file "
              "does not say).")
@click.option("--target", "tgt", help="Target language (default: every other language of the file).")
@click.option("--batch-size", default=2000, show_default=True, help="Units per transaction.")
@click.option("--restart", is_flag=True, help="Read an interrupted file from the start instead of resuming.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def import_cmd(files: tuple[Path, ...], db: str | None, src: str | None, tgt: str | None, batch_size: int,
               restart: bool, no_progress: bool) -> None:
    """Import translation units into the TM (TMX streamed; XLIFF, SDLXLIFF, MQXLIFF, PO: units with a target)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)

    from tower_cat.tm import open_translation_memory

    from tower_cat.outputs import refuse_overlaps

    console = _console(err=True)
    spec = _tm_spec(db)
    refuse_overlaps({"--db": spec}, {"FILE": files})
    with open_translation_memory(spec) as memory:
        for path in files:
            show = not no_progress and console.is_terminal
            progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[rate]:>8} units/s"),
                                TimeElapsedColumn(), console=console, transient=True, disable=not show)
            with progress:
                task = progress.add_task(path.name, total=None, rate="")

                def report(done: int, total: int | None, _task=task) -> None:
                    elapsed = progress.tasks[0].elapsed or 0.0
                    rate = f"{done / elapsed:,.0f}" if elapsed > 0 else ""
                    progress.update(_task, completed=done, total=total, rate=rate)

                stats = memory.import_file(path, src, tgt, progress=report, batch_size=batch_size,
                                           resume=not restart)
            pairs = ", ".join(f"{k} {v:,}" for k, v in stats.pairs.items()) or "none"
            resumed = f" (resumed after {stats.resumed_from:,} units)" if stats.resumed_from else ""
            console.print(f"{path}: {stats.units:,} units in {stats.seconds:.1f}s ({stats.rate:,.0f}/s){resumed}; "
                          f"{stats.added:,} new, {stats.updated:,} duplicates merged, {stats.skipped:,} skipped; "
                          f"pairs: {pairs}")


@tm.command("lookup")
@click.argument("text")
@click.option("--db", "--tm", "db", metavar="DB|TMX|URL", help=_DB_HELP + "; a TMX is read for this lookup.")
@click.option("--source", "src", required=True)
@click.option("--target", "tgt", required=True)
@click.option("--limit", default=5, show_default=True)
@click.option("--min-score", default=70.0, show_default=True)
@click.option("--context", "ctx", help="Context key (resname / msgctxt) for 101% matches.")
@click.option("--ignore-case", is_flag=True, help="Exact matches ignore letter case.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lookup_cmd(text: str, db: str | None, src: str, tgt: str, limit: int, min_score: float, ctx: str | None,
               ignore_case: bool, as_json: bool) -> None:
    """Look up exact, context and fuzzy matches for a source text."""
    from tower_cat.tm import open_translation_memory

    with open_translation_memory(_tm_spec(db), ignore_case=ignore_case, readonly=True) as memory:
        matches = memory.lookup(text, src, tgt, context={"key": ctx} if ctx else None, limit=limit,
                                min_score=min_score)
    if as_json:
        click.echo(json.dumps([m.as_dict() for m in matches], ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    console = _console()
    if not matches:
        console.print(f"no match of {min_score:g}% or more")
        return
    table = Table("score", "kind", "source", "target", "penalties", "origin")
    for m in matches:
        pens = ", ".join(f"{k} -{v:g}" for k, v in m.penalties.items())
        table.add_row(f"{m.score:g}", m.kind, m.source.text, m.target.text, pens, m.origin or "")
    console.print(table)


@tm.command("export")
@click.option("--db", "--tm", "db", metavar="DB|TMX|URL", help=_DB_HELP + ".")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", "src")
@click.option("--target", "tgt")
def export_cmd(db: str | None, output: Path, src: str | None, tgt: str | None) -> None:
    """Export the TM (or one language pair) as TMX 1.4."""
    from tower_cat.outputs import refuse_overlaps
    from tower_cat.tm import open_translation_memory

    spec = _tm_spec(db)
    refuse_overlaps({"-o": output}, {"--db": spec})
    with open_translation_memory(spec, readonly=True) as memory:
        count = memory.export_tmx(output, src, tgt)
    _console(err=True).print(f"wrote {count:,} translation units to {output}")


@tm.command("stats")
@click.option("--db", "--tm", "db", metavar="DB|URL", help=_DB_HELP + ".")
@click.option("--json", "as_json", is_flag=True)
def stats_cmd(db: str | None, as_json: bool) -> None:
    """Entries per language pair and past imports."""
    from tower_cat.tm import open_translation_memory

    with open_translation_memory(_tm_spec(db), readonly=True) as memory:
        stats = memory.stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    console = _console()
    console.print(f"{stats['entries']:,} entries, {stats['sources']:,} distinct sources ({stats['index']} index)")
    for pair, n in stats["pairs"].items():
        console.print(f"  {pair}: {n:,}")


@click.group("terms")
def terms() -> None:
    """Terminology: check targets against a glossary (TBX, CSV/TSV)."""


@terms.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--glossary", "-g", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", "src", help="Source language (default: the file's).")
@click.option("--target", "tgt", help="Target language (default: the file's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--fail-under", type=float, default=None, help="Exit with status 1 below this compliance %.")
def check_cmd(file: Path, glossary: Path, src: str | None, tgt: str | None, as_json: bool,
              fail_under: float | None) -> None:
    """Per-unit terminology violations of a bilingual file and its compliance percentage."""
    from tower_cat import formats
    from tower_cat.terminology import Glossary

    gloss = Glossary.load(glossary, src_lang=None, tgt_lang=None)
    fmt = formats.detect(file)
    if fmt == "tmx":
        from tower_cat.formats import tmx

        doc = tmx.load(file, target_lang=tgt)
    else:
        doc = formats.load(file)
    report = gloss.check_document(doc, src, tgt)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        from rich.table import Table

        console = _console()
        if report.violations:
            table = Table("unit", "term", "problem", "source", "target", show_lines=True)
            for u in report.violations:
                for issue in u.issues:
                    table.add_row(u.unit_id, issue.source_term, issue.message, u.source, u.target,
                                  style="yellow" if issue.severity == "warning" else None)
            console.print(table)
        console.print(f"terminology compliance: [bold]{report.compliance:.1f}%[/bold] "
                      f"({report.terms_ok}/{report.terms_checked} term occurrences in {report.checked_units} "
                      f"translated units; {report.skipped_units} without target skipped)")
    if fail_under is not None and report.compliance < fail_under:
        sys.exit(1)
