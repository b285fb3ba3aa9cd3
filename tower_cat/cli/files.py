"""File commands that need no model: ``tower-cat inspect``, ``validate`` and ``pseudo``.

Imported lazily by ``tower_cat.cli`` (``LAZY_COMMANDS``); importing this module never pulls in a model library.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tower_cat import codes, formats
from tower_cat.document import CodeKind, Document, InlineCode, Issue, Segment
from tower_cat import errors
from tower_cat.errors import FormatError


OutputError = errors.OutputError  # one error family (tower_cat.errors); importable from here as before


def _console() -> Console:
    from tower_cat.cli import console

    return console()


def _load(path: Path, strict: bool, lenient: bool = False) -> Document:
    return formats.load(path, strict=strict, lenient=lenient)


_LENIENT_HELP = "Read a PO whose declared charset does not fit its bytes as declared, with a warning (else an error)."


def _issue_dict(issue: Issue) -> dict[str, Any]:
    return {"severity": issue.severity, "line": issue.line, "unit": issue.unit, "message": issue.message}


# ------------------------------------------------------------------------------------------------ inspect

def file_stats(doc: Document) -> dict[str, Any]:
    """The numbers ``tower-cat inspect`` shows (also used by reports)."""
    units = doc.units
    states = Counter(u.state if u.state else "(none)" for u in units)
    return {
        "file": str(doc.path),
        "format": doc.format,
        "source_lang": doc.source_lang,
        "target_lang": doc.target_lang,
        "units": len(units),
        "words": sum(u.source.words() for u in units),
        "characters": sum(len(u.source.text) for u in units),
        "inline_codes": sum(len(u.source.codes) for u in units),
        "units_with_codes": sum(1 for u in units if u.source.codes),
        "states": dict(sorted(states.items())),
        "locked": sum(1 for u in units if u.locked),
        "final": sum(1 for u in units if u.final),
        "untranslatable": sum(1 for u in units if not u.translatable),
        "translatable": sum(1 for u in units if not u.protected),
        "with_target": sum(1 for u in units if u.has_target),
        "without_target": sum(1 for u in units if not u.has_target),
        "issues": {"errors": sum(1 for i in doc.issues if i.severity == "error"),
                   "warnings": sum(1 for i in doc.issues if i.severity != "error")},
    }


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--lenient", is_flag=True, help=_LENIENT_HELP)
def inspect_cmd(file: Path, as_json: bool, lenient: bool = False) -> None:
    """Show what a localization file holds: format, languages, units, words, codes, states."""
    doc = _load(file, strict=False, lenient=lenient)
    stats = file_stats(doc)
    if as_json:
        click.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    table = Table(title=Text(str(file)), show_header=False, box=None, pad_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("format", stats["format"]),
        ("languages", f"{stats['source_lang'] or '?'} → {stats['target_lang'] or '?'}"),
        ("units", stats["units"]),
        ("words (source)", stats["words"]),
        ("characters (source)", stats["characters"]),
        ("inline codes", f"{stats['inline_codes']} in {stats['units_with_codes']} units"),
        ("with target", stats["with_target"]),
        ("without target", stats["without_target"]),
        ("locked", stats["locked"]),
        ("final / approved", stats["final"]),
        ("untranslatable", stats["untranslatable"]),
        ("states", ", ".join(f"{k}: {v}" for k, v in stats["states"].items()) or "-"),
        ("issues", f"{stats['issues']['errors']} errors, {stats['issues']['warnings']} warnings"),
    ]
    for what, value in rows:
        table.add_row(what, Text(str(value)))
    _console().print(table)


# ------------------------------------------------------------------------------------------------ validate

def _loose(segment: Segment) -> Segment:
    """The segment with codes compared by kind, id and element name, not by their exact markup (a target's
    ``<g id="1" ctype="bold">`` may spell its attributes differently from the source's). ``mrk`` annotations
    (terms, comments, tracked changes) are left out: they may differ between source and target."""
    spell = {CodeKind.OPEN: "<{} {}>", CodeKind.CLOSE: "</{} {}>", CodeKind.STANDALONE: "<{} {}/>"}
    return Segment([p if isinstance(p, str) else
                    InlineCode(p.id, p.kind, spell[p.kind].format(p.tag or "code", p.id), tag=p.tag,
                               isolated=p.isolated)
                    for p in segment.parts if isinstance(p, str) or p.tag != "mrk"])


def code_issues(doc: Document, units: list | None = None) -> list[Issue]:
    """Warnings for existing targets whose inline codes do not match their source (missing, extra, broken pairs).

    Extra codes are not repeated for units where the format module already warned about them. ``units``: these
    instead of ``doc.units`` (a streamed document's window).
    """
    reported = {i.unit for i in doc.issues if "inline code" in i.message}
    found = []
    for unit in doc.units if units is None else units:
        if unit.target is None or unit.target.is_empty():
            continue
        for msg in codes.check(_loose(unit.source), _loose(unit.target)):
            if unit.id in reported and msg.startswith("extra"):
                continue
            found.append(Issue("warning", f"target: {msg}", line=unit.line, unit=unit.id))
    return found


def _validate_file(path: Path, fmt: str, check_codes: bool, lenient: bool) -> tuple[Any, list[Issue]]:
    """The file's findings and the code warnings of its targets: streamed a window at a time where the format
    allows (XLIFF 1.2, MQXLIFF: memory follows the window, not the file), else from the whole file."""
    streamed = formats.stream(path, fmt, strict=False)
    if streamed is None:
        doc = formats.load(path, fmt, strict=False, lenient=lenient)
        return doc, code_issues(doc) if check_codes else []
    found: list[Issue] = []
    with streamed:
        for units in streamed.windows():
            if check_codes:
                found += code_issues(streamed, units)
    return streamed, found


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--codes/--no-codes", "check_codes", default=True, show_default=True,
              help="Also warn where a target's inline codes differ from its source.")
@click.option("--lenient", is_flag=True, help=_LENIENT_HELP)
@click.pass_context
def validate_cmd(ctx: click.Context, files: tuple[Path, ...], as_json: bool, check_codes: bool,
                 lenient: bool = False) -> None:
    """Check files against their format; list every error and warning. Exit code 1 if any file has an error."""
    results = []
    for path in files:
        entry: dict[str, Any] = {"file": str(path), "format": None, "errors": [], "warnings": []}
        try:
            entry["format"] = formats.detect(path)
            doc, found = _validate_file(path, entry["format"], check_codes, lenient)
        except FormatError as exc:  # malformed XML, unsafe DOCTYPE, unknown format, missing file
            entry["errors"].append({"severity": "error", "line": exc.line, "unit": exc.unit,
                                    "message": exc.message + (f" ({exc.hint})" if exc.hint else "")})
        else:
            for issue in doc.issues:
                entry["errors" if issue.severity == "error" else "warnings"].append(_issue_dict(issue))
            entry["warnings"].extend(_issue_dict(i) for i in found)
        entry["ok"] = not entry["errors"]
        results.append(entry)

    failed = any(not r["ok"] for r in results)
    if as_json:
        click.echo(json.dumps(results if len(files) > 1 else results[0], ensure_ascii=False, indent=2))
    else:
        console = _console()
        for r in results:
            for item in r["errors"] + r["warnings"]:
                where = r["file"] + (f":{item['line']}" if item["line"] else "")
                unit = f"unit {item['unit']!r}: " if item["unit"] else ""
                style = "red" if item["severity"] == "error" else "yellow"
                line = Text(f"{where}: ")
                line.append(item["severity"], style=style)
                line.append(f": {unit}{item['message']}")
                console.print(line)
            fmt = f" ({r['format']})" if r["format"] else ""
            verdict = Text(f"{r['file']}{fmt}: ")
            if r["ok"]:
                verdict.append("ok", style="green")
            else:
                verdict.append(f"{len(r['errors'])} errors", style="red")
            verdict.append(f", {len(r['warnings'])} warnings")
            console.print(verdict)
    if failed:
        ctx.exit(1)


# ------------------------------------------------------------------------------------------------ pseudo

def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


@click.command("pseudo")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the pseudo-translated file.")
@click.option("--target-lang", metavar="xx-XX", help="Target language to record (default: the file's, else qps-ploc).")
@click.option("--expansion", type=click.FloatRange(0.0, 10.0), default=0.3, show_default=True,
              help="Make every text this much longer (0.3 = 30%).")
@click.option("--in-place", is_flag=True, help="Overwrite FILE itself.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--lenient", is_flag=True, help=_LENIENT_HELP)
def pseudo_cmd(file: Path, output: Path | None, target_lang: str | None, expansion: float, in_place: bool,
               as_json: bool, lenient: bool = False) -> None:
    """Pseudo-translate FILE (accented, padded, bracketed text; codes kept) to test localization readiness."""
    from tower_cat.pseudo import pseudo_document, pseudo_units, start_summary

    if output is None:
        if not in_place:
            raise OutputError("no output file given", hint="use -o OUT, or --in-place to overwrite the input")
        output = file
    if file.exists() and _same_file(file, output) and not in_place:
        raise OutputError("refusing to overwrite the input file", path=output,
                          hint="choose another -o, or pass --in-place")
    from tower_cat.outputs import refuse_overlaps

    refuse_overlaps({"--in-place" if in_place else "-o": output}, {"FILE": None if in_place else file})
    streamed = formats.stream(file)
    if streamed is None:
        doc = formats.load(file, lenient=lenient)  # strict: a broken file stops here, before anything is written
        summary = pseudo_document(doc, expansion=expansion, target_lang=target_lang)
        doc.save(output)
    else:  # a window at a time; an error part-way leaves no output (the copy is renamed into place at the end)
        with streamed:
            summary = start_summary(streamed, expansion, target_lang)
            streamed.write_to(output)
            for units in streamed.windows():
                pseudo_units(units, summary, expansion)
            streamed.finish()
    if as_json:
        click.echo(json.dumps({"file": str(file), "output": str(output), "units": summary.units,
                               "translated": summary.translated, "skipped_protected": summary.skipped_protected,
                               "skipped_empty": summary.skipped_empty, "flagged": summary.flagged,
                               "target_lang": summary.target_lang, "problems": summary.problems},
                              ensure_ascii=False, indent=2))
        return
    console = _console()
    for unit_id, problems in summary.problems.items():
        for p in problems:
            console.print(Text(f"{file}: unit {unit_id!r}: {p}", style="yellow"))
    console.print(Text(f"{output}: {summary.line()}"))
