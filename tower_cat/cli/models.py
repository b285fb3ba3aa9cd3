"""`tower-cat convert` and `tower-cat translate-text`: the engine's two commands."""

from __future__ import annotations

from pathlib import Path

import click

from tower_cat.convert import FAMILIES, QUANTIZATIONS
from tower_cat.core import default_cache_path  # noqa: F401  (the library's default; importable from here as before)


@click.command("convert")
@click.argument("src")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quantization", type=click.Choice(QUANTIZATIONS), default=None,
              help="Weight type to store (default: keep the checkpoint's). int8 for CPU use.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--family", type=click.Choice(FAMILIES), default=None,
              help="The model family (prompt format, wording, end tokens) instead of the guess from the "
                   "architecture and chat template; bayling: BayLing's own conversation format.")
@click.option("--languages", default=None, metavar="en,de,...",
              help="The languages the model knows (jobs warn about others). Default: the model card's list for "
                   "Tower models, else unknown.")
def convert(src: str, out: Path, quantization: str | None, force: bool, family: str | None,
            languages: str | None) -> None:
    """Convert a Hugging Face model (folder, or hub id when online) into a tower-cat model folder."""
    from tower_cat.convert import convert_model
    from tower_cat.outputs import refuse_output_folder_overlaps

    if Path(src).exists():  # a local folder, not a hub id: OUT (emptied with --force) must not hold it
        refuse_output_folder_overlaps({"OUT": out}, {"SRC": src})
    info = convert_model(src, out, quantization=quantization, force=force, family=family, languages=languages)
    click.echo(f"{out}: {info.family} ({info.architecture}{', given' if info.family_source == 'given' else ''}), "
               f"stops on {', '.join(info.end_tokens)}" + (f", {quantization}" if quantization else ""))
    if info.languages:
        click.echo(f"languages: {', '.join(info.languages)} ({info.languages_source})")
    else:
        click.echo("languages: unknown (give --languages to have jobs warn about others)")
    for note in info.notes:
        click.echo(f"note: {note}", err=True)


@click.command("translate-text")
@click.argument("text")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A folder made by `tower-cat convert` (or an HF folder with --backend transformers).")
@click.option("--source", "-s", required=True, help="Source language code, e.g. en.")
@click.option("--target", "-t", required=True, help="Target language code, e.g. de or pt-BR.")
@click.option("--backend", type=click.Choice(["ct2", "transformers"]), default="ct2", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 or GPU list 0,1.")
@click.option("--compute-type", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: all available).")
@click.option("--hf-model", default=None, help="Original HF folder for --backend transformers.")
@click.option("--max-new-tokens", type=int, default=512, show_default=True)
@click.option("--no-cache", is_flag=True, help="Do not read or write the generation cache.")
@click.option("--stream", is_flag=True, help="Print tokens as they are generated.")
def translate_text(text: str, model_dir: Path, source: str, target: str, backend: str, device: str,
                   compute_type: str, threads: int | None, hf_model: str | None, max_new_tokens: int,
                   no_cache: bool, stream: bool) -> None:
    """Translate TEXT with a model: a quick check that a model folder works."""
    import contextlib

    from tower_cat import prompts
    from tower_cat.core import quick_prompt, quick_translate as run
    from tower_cat.engine import Engine, GenerationOptions

    engine = Engine.load(model_dir, device=device, compute_type=compute_type, threads=threads,
                         backend=backend, hf_model=hf_model, cache=None if no_cache else default_cache_path())
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    try:
        if stream:
            prompt = quick_prompt(engine, text, source, target)
            with contextlib.closing(engine.generate_tokens(prompt, options, source=text)) as events:
                for event in events:
                    click.echo(event.text, nl=False)
            click.echo()
            return
        result = run(engine, text, source, target, options)
        click.echo(prompts.clean_translation(result.text, target))
        if result.truncated:
            click.echo("warning: the translation hit the token limit and may be cut off "
                       "(raise --max-new-tokens)", err=True)
    finally:
        engine.close()
