"""`make demo`: run the main job on the bundled samples and print what happened.

Until the model pipeline lands, the job is pseudo-translation through the real file path
(load → render codes → transform → restore codes → write with states), which needs no model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tower_cat import formats
from tower_cat.pseudo import pseudo_document

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
OUT = ROOT / "out" / "demo"


def main() -> int:
    console = Console()
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".xlf", ".xliff", ".po", ".sdlxliff", ".mqxliff"))
    if not files:
        console.print(f"[red]no sample files in {SAMPLES}[/red]")
        return 1
    table = Table(title="tower-cat demo: pseudo-translation of samples/")
    for col in ("file", "format", "units", "translated", "protected", "flagged", "output"):
        table.add_column(col, justify="right" if col in ("units", "translated", "protected", "flagged") else "left")
    for path in files:
        doc = formats.load(path)
        summary = pseudo_document(doc, expansion=0.3)
        out = OUT / path.name
        doc.save(out)
        table.add_row(path.name, doc.format, str(summary.units), str(summary.translated),
                      str(summary.skipped), str(summary.flagged), str(out.relative_to(ROOT)))
    console.print(table)
    console.print("Open the files under out/demo/ in your CAT tool: only targets and states changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
