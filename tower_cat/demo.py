"""`make demo`: the whole translate pipeline on the bundled samples, with a small model trained on the spot.

1. Build the demo model once (``tower_cat.finetune.demo.build_demo_model``: a small Llama trained briefly on
   ``samples/tower-notes.tmx`` through the real fine-tuning path, converted to CTranslate2), cached under
   ``.cache/demo-model/``.
2. Import ``samples/tower-notes.tmx`` into a translation memory under ``.cache/``.
3. Translate ``samples/tower-notes.en-de.xlf``, ``tower-notes.de.po`` and ``tower-notes.en-pt.xliff`` with the TM
   and ``samples/glossary.tbx`` into ``out/demo/``, and print the summary.

The demo model only shows the pipeline working end to end; the README ("Use a real Tower model") says how to run a real Tower model.
A second run reuses the model, the TM and the generation cache, and takes seconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CACHE = ROOT / ".cache"
OUT = ROOT / "out" / "demo"
INPUTS = ("tower-notes.en-de.xlf", "tower-notes.de.po", "tower-notes.en-pt.xliff")


def main(argv: list[str] | None = None) -> int:
    from tower_cat.cli.translate import _progress, print_summary
    from tower_cat.engine import Engine
    from tower_cat.finetune.demo import build_demo_model
    from tower_cat.pipeline import PipelineOptions, run_files
    from tower_cat.terminology import Glossary
    from tower_cat.tm import TranslationMemory

    console = Console(highlight=False)
    started = time.time()
    console.print("[bold]1/3[/bold] demo model (built once, cached under .cache/demo-model/)")
    model = build_demo_model(CACHE / "demo-model", console=console)
    built = time.time() - started
    console.print(f"    {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model} ({built:.0f} s)")

    console.print("[bold]2/3[/bold] translation memory from samples/tower-notes.tmx")
    memory = TranslationMemory(CACHE / "demo-tm.sqlite")
    stats = memory.import_file(SAMPLES / "tower-notes.tmx")
    console.print(f"    {len(memory):,} entries ({stats.added:,} new this run)")
    glossary = Glossary.load(SAMPLES / "glossary.tbx")

    console.print("[bold]3/3[/bold] translate the samples with TM + glossary.tbx -> out/demo/")
    OUT.mkdir(parents=True, exist_ok=True)
    inputs = [SAMPLES / name for name in INPUTS]
    outputs = [OUT / name for name in INPUTS]
    engine = Engine.load(model, device="cpu", cache=CACHE / "demo-generations.sqlite")
    try:
        with _progress(console, "translate", disable=False) as report:
            summary = run_files("translate", inputs, outputs, engine, tm=memory, glossary=glossary,
                                options=PipelineOptions(max_new_tokens=96), progress=report)
    finally:
        engine.close()
        memory.close()
    (OUT / "summary.json").write_text(summary.to_json() + "\n", encoding="utf-8")
    print_summary(summary, console)
    console.print(_examples(summary, outputs))
    console.print(f"Done in {time.time() - started:.0f} s. Open the files under out/demo/ in a CAT tool: only "
                  "targets, states and provenance changed; every unit's outcome is in out/demo/summary.json.")
    console.print(Text("The demo model is tiny and trained for a few minutes on the sample memory: it shows the "
                       "pipeline, not translation quality. For real work convert TowerInstruct or Tower+ "
                       "(README: \"Use a real Tower model\").", style="dim"))
    return 1 if summary.failed else 0


def _examples(summary, outputs: list[Path], limit: int = 8) -> Table:
    """A few machine-translated units next to their source (codes as the model sees them: <1>…</1>, <2/>)."""
    from tower_cat import codes, formats

    table = Table(title="Some machine translations (out/demo/tower-notes.en-de.xlf)", show_lines=False)
    for col in ("unit", "source", "target", "status"):
        table.add_column(col, overflow="fold")
    results = {r.unit: r for r in summary.files[0].results} if summary.files else {}
    doc = formats.load(outputs[0])
    shown = 0
    for unit in doc.units:
        r = results.get(unit.id)
        if r is None or r.action != "mt" or not unit.has_target:
            continue
        table.add_row(unit.id, codes.render(unit.source).text, codes.render(unit.target).text, r.status or "")
        shown += 1
        if shown >= limit:
            break
    return table


if __name__ == "__main__":
    sys.exit(main())
