"""``tower-cat analyze``: words per TM match band, repetitions, per file and total (no model needed)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tower_cat.cli import console as cli_console
from tower_cat.formats._xml import atomic_write


@click.command("analyze")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tm", "tm_spec", default=None, metavar="DB|TMX|URL",
              help="Translation memory to analyse against: a tower-cat TM database, a TMX file or a "
                   "postgresql:// URL (default: $TOWER_CAT_TM_URL; none: every first occurrence is new).")
@click.option("--source-lang", default=None, help="Source language when a file names none.")
@click.option("--target-lang", default=None, help="Target language when a file names none.")
@click.option("--bands", default=None, metavar="95,85,75,50",
              help="Lower bounds of the fuzzy bands, in percent (default 95,85,75,50).")
@click.option("--weights", default=None, metavar="NAME=W,...",
              help="Weight per category for the weighted word count, e.g. 'repetition=0.1,100=0.1,95-99=0.3,"
                   "85-94=0.6,new=1' (categories: context, repetition, 100, one per band, new, locked; 'fuzzy' "
                   "sets every band at once).")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the analysis as CSV ('-' prints it).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML report.")
def analyze(files, tm_spec, source_lang, target_lang, bands, weights, as_json, csv_path, html_path) -> None:
    """CAT-style analysis of FILES: segments, words, characters and tags per match band (context/101 %,
    repetitions, 100 %, fuzzy bands, new, locked), per file and in total, with a weighted word count for quotes.
    Word counting follows Trados Studio / memoQ conventions (see `tower_cat.analysis`)."""
    from tower_cat.analysis import Bands, analyze_files
    from tower_cat.tm import open_translation_memory

    from tower_cat.outputs import refuse_overlaps

    band_set = Bands.parse(bands, weights)
    refuse_overlaps({"--csv": None if str(csv_path) == "-" else csv_path, "--html": html_path},
                    {"FILE": files, "--tm": tm_spec})
    memory = open_translation_memory(tm_spec, readonly=True) if tm_spec else None
    try:
        result = analyze_files(files, tm=memory, bands=band_set, source_lang=source_lang, target_lang=target_lang,
                               tm_name=str(tm_spec) if tm_spec else None)
    finally:
        if memory is not None:
            memory.close()
    if csv_path is not None:
        if str(csv_path) == "-":
            click.echo(result.to_csv(), nl=False)
        else:
            atomic_write(csv_path, result.to_csv().encode("utf-8"))
    if html_path is not None:
        atomic_write(html_path, result.to_html().encode("utf-8"))
    if as_json:
        click.echo(result.to_json())
    elif csv_path is None or str(csv_path) != "-":
        _print(result)


def _print(result) -> None:
    console = cli_console()
    for fa in [*result.files, result.total] if len(result.files) > 1 else result.files:
        total = fa.total
        table = Table(title=fa.name, title_justify="left")
        for col in ("match", "segments", "words", "characters", "tags", "% words", "weight"):
            table.add_column(col, justify="left" if col == "match" else "right")
        for name, c in fa.categories.items():
            pct = 100 * c.words / total.words if total.words else 0.0
            table.add_row(name, f"{c.segments:,}", f"{c.words:,}", f"{c.characters:,}", f"{c.tags:,}",
                          f"{pct:.1f}", f"{result.bands.weight(name):g}")
        table.add_row("total", f"{total.segments:,}", f"{total.words:,}", f"{total.characters:,}",
                      f"{total.tags:,}", "100.0", "", style="bold")
        console.print(table)
        console.print(f"weighted words: {fa.weighted_words:,.2f}\n")
