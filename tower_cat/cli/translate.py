"""``tower-cat translate`` and ``tower-cat post-edit``: whole files through the pipeline (``tower_cat.pipeline``).

    tower-cat translate FILE... -o OUT --model DIR [--tm tm.sqlite|memory.tmx] [--glossary glossary.tbx]
                        [--source en] [--target de] [--few-shot 3] [--overwrite] [--in-place] [--json]
                        [--qe-backend comet|llm|logprob [--qe-model DIR] [--ape-below T]]
    tower-cat post-edit FILE... -o OUT --model DIR [--glossary ...] [--json]

OUT is a file for one input and a folder for several. Generations are cached (``--cache``, default
``$TOWER_CAT_CACHE`` or ``~/.cache/tower-cat/generations.sqlite``): after Ctrl-C or a crash, the same command
continues where it stopped. Exit status: 0 when every file was written (units left for review are not
failures), 1 when a file could not be read or written, 2 for a usage or model error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from tower_cat.document import STATUSES
from tower_cat.errors import OutputError


def _common(func: Callable) -> Callable:
    options = [
        click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
                     help="Output file (one input) or folder (several inputs)."),
        click.option("--in-place", is_flag=True, help="Write the results into the input files."),
        click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
                     help="A model folder made by `tower-cat convert`."),
        click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="TBX or CSV/TSV glossary: terms go into the prompts and are checked."),
        click.option("--source", "source_lang", default=None, help="Source language when a file does not say."),
        click.option("--target", "target_lang", default=None, help="Target language when a file does not say."),
        click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Generation cache (SQLite). Default: $TOWER_CAT_CACHE or ~/.cache/tower-cat/."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the generation cache."),
        click.option("--max-new-tokens", type=int, default=256, show_default=True),
        click.option("--chunk-size", type=click.IntRange(1), default=None,
                     help="Prompts per engine call (progress and resume granularity). Default: the engine's "
                          "(128 on the CPU, 512 on a GPU: larger, fuller batches)."),
        click.option("--translated-above", type=float, default=None,
                     help="Write clean MT with model confidence (0-100) at or above this as 'translated' "
                          "instead of 'needs-review'."),
        click.option("--backend", type=click.Choice(["ct2", "transformers", "openai"]), default="ct2",
                     show_default=True, help="openai: a remote OpenAI-compatible inference server (--endpoint); "
                                             "--model then only gives the tokenizer and family."),
        click.option("--endpoint", default=None, envvar="TOWER_CAT_ENDPOINT", metavar="URL",
                     help="--backend openai: the server's base URL (vLLM, SGLang, TGI, llama.cpp). "
                          "Default: $TOWER_CAT_ENDPOINT."),
        click.option("--api-key", default=None, envvar="TOWER_CAT_ENDPOINT_KEY",
                     help="--backend openai: the server's API key (default: $TOWER_CAT_ENDPOINT_KEY)."),
        click.option("--served-model", default=None,
                     help="--backend openai: the server's model name (default: the only one it serves)."),
        click.option("--ray", "ray_address", default=None, metavar="auto|local|ADDRESS",
                     help="Decode the model batches on a Ray cluster (auto: the running one; local: start one "
                          "here); files, TM and cache stay in this process."),
        click.option("--ray-actors", type=click.IntRange(1), default=None,
                     help="Ray workers (default: one per GPU of the cluster, else one per CPU)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 or 0,1."),
        click.option("--compute-type", default="auto", show_default=True),
        click.option("--threads", type=int, default=None, help="CPU threads (default: all available)."),
        click.option("--hf-model", default=None, help="Original HF folder for --backend transformers."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary (with every unit) as JSON."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--dry-run", is_flag=True,
                     help="Set the job up (scope, TM matches, prompts) without the model's weights and write nothing: "
                          "prints what would be sent (counts; prompts with --show-prompts)."),
        click.option("--show-prompts", is_flag=True,
                     help="With --dry-run: print every unit's prompt as JSON lines (file, unit, messages, the "
                          "rendered text and its token count), exactly as the engine would receive it."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("translate")
@_common
@click.option("--tm", "tm_path", metavar="DB|TMX|URL", default=None,
              help="Translation memory: a tower-cat TM database, a postgresql:// URL, or a TMX file (imported for "
                   "this run). Default: $TOWER_CAT_TM_URL when set.")
@click.option("--few-shot", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Fuzzy TM matches shown to the model as examples.")
@click.option("--fuzzy-min", type=float, default=70.0, show_default=True, help="Lowest TM score used as example.")
@click.option("--overwrite", is_flag=True, help="Translate units that already have a target too.")
@click.option("--exact-status", type=click.Choice(STATUSES), default="needs-review", show_default=True,
              help="Status of targets filled from a 100 % TM match (101 % context matches: translated).")
@click.option("--context", "context_window", type=click.IntRange(0, 5), default=1, show_default=True,
              help="Neighbouring source segments on each side given to the model as context.")
@click.option("--term-repair", type=click.IntRange(0, 16), default=4, show_default=True,
              help="n-best width when a translation misses a glossary term (0: off).")
@click.option("--instruction", "instructions", multiple=True,
              help="An instruction for every unit (repeatable), e.g. \"max 40 characters\" or \"use 'Notiz'\": "
                   "verifiable ones are checked and retried once (README: Instructions tower-cat can check).")
@click.option("--qe-backend", type=click.Choice(["comet", "llm", "logprob"]), default=None,
              help="Score the machine translations (0-100, written into the files): comet (a COMET folder, "
                   "--qe-model), llm (a Tower model as judge) or logprob (the model's token log-probabilities).")
@click.option("--qe-model", type=click.Path(exists=True, path_type=Path), default=None,
              help="QE model folder: required for comet; llm/logprob default to the translation model (--model).")
@click.option("--ape-below", type=click.FloatRange(min=0), default=None,
              help="QE-gated post-editing: post-edit machine translations scoring below T (0-100), re-score them "
                   "and keep the better version. Needs --qe-backend.")
def translate(files, output, in_place, model_dir, glossary, source_lang, target_lang, cache, no_cache,
              max_new_tokens, chunk_size, translated_above, backend, endpoint, api_key, served_model, ray_address,
              ray_actors, device, compute_type, threads, hf_model, as_json, no_progress, dry_run, show_prompts, tm_path,
              few_shot, fuzzy_min, overwrite, exact_status, context_window, term_repair, instructions, qe_backend,
              qe_model, ape_below) -> int:
    """Translate XLIFF/SDLXLIFF/MQXLIFF/PO files: TM leverage, glossary, document context, codes kept."""
    from tower_cat.pipeline import PipelineOptions

    _check_qe_flags(qe_backend, qe_model, ape_below)
    opts = PipelineOptions(source_lang=source_lang, target_lang=target_lang, overwrite=overwrite,
                           few_shot=few_shot, fuzzy_min=fuzzy_min, exact_status=exact_status,
                           context_window=context_window, term_repair=term_repair, chunk_size=chunk_size,
                           max_new_tokens=max_new_tokens, translated_above=translated_above,
                           instructions=tuple(instructions), ape_below=ape_below)
    return _run("translate", files, output, in_place, model_dir, glossary, tm_path, cache, no_cache, opts,
                _engine_kwargs(backend, device, compute_type, threads, hf_model, endpoint, api_key, served_model),
                as_json, no_progress, qe=(qe_backend, qe_model) if qe_backend else None,
                ray=(ray_address, ray_actors), dry_run=(dry_run, show_prompts))


@click.command("post-edit")
@_common
@click.option("--only", "only", metavar="origin=mt|tm|human|any", default=None,
              help="Post-edit only targets of this origin (as the file says: SDLXLIFF origin, XLIFF state-qualifier, "
                   "memoQ status ...); a list such as origin=mt,tm. Default: any origin but 100 % TM matches; "
                   "origin=tm and origin=any include them.")
@click.option("--states", "states", metavar="LIST", default=None,
              help="Post-edit only units in these states: new, needs-review, translated, reviewed or the file's own "
                   "values (Draft, Translated, PartiallyEdited ...), comma-separated. Default: every unit nobody "
                   "confirmed (Trados Translated/Approved, memoQ confirmed, PO non-fuzzy, XLIFF reviewed/final "
                   "are left alone).")
@click.option("--below", type=click.FloatRange(0, 100), default=None,
              help="Post-edit only units whose QE score (0-100) is below this: the --qe-backend's score, else the "
                   "score the file carries.")
@click.option("--qe-backend", type=click.Choice(["comet", "llm", "logprob"]), default=None,
              help="Score the in-scope targets first (comet, llm or logprob, as translate) and gate with --below / "
                   "--ape-below; post-edits that are written get their score.")
@click.option("--qe-model", type=click.Path(exists=True, path_type=Path), default=None,
              help="QE model folder: required for comet; llm/logprob default to --model.")
@click.option("--ape-below", type=click.FloatRange(min=0), default=None,
              help="QE-gated post-editing: post-edit targets scoring below T, re-score, keep the better version "
                   "(a tie keeps the original). Needs --qe-backend.")
def post_edit(files, output, in_place, model_dir, glossary, source_lang, target_lang, cache, no_cache,
              max_new_tokens, chunk_size, translated_above, backend, endpoint, api_key, served_model, ray_address,
              ray_actors, device, compute_type, threads, hf_model, as_json, no_progress, dry_run, show_prompts, only,
              states, below, qe_backend, qe_model, ape_below) -> int:
    """Post-edit the existing targets (e.g. vendor MT) of bilingual files; codes kept, changes measured (TER).

    The scope never includes locked or approved/final units; by default it also leaves confirmed units and 100 %
    TM matches alone (--only, --states, --below change it)."""
    from tower_cat.pipeline import PipelineOptions
    from tower_cat.scope import PostEditScope

    _check_qe_flags(qe_backend, qe_model, ape_below)
    scope = PostEditScope.parse(only, states, below)
    opts = PipelineOptions(source_lang=source_lang, target_lang=target_lang, chunk_size=chunk_size,
                           max_new_tokens=max_new_tokens, translated_above=translated_above, ape_below=ape_below,
                           post_edit_scope=scope)
    return _run("post-edit", files, output, in_place, model_dir, glossary, None, cache, no_cache, opts,
                _engine_kwargs(backend, device, compute_type, threads, hf_model, endpoint, api_key, served_model),
                as_json, no_progress, qe=(qe_backend, qe_model) if qe_backend else None,
                ray=(ray_address, ray_actors), dry_run=(dry_run, show_prompts))


def _check_qe_flags(qe_backend, qe_model, ape_below) -> None:
    if ape_below is not None and qe_backend is None:
        raise click.UsageError("--ape-below needs --qe-backend (comet, llm or logprob)")
    if qe_backend == "comet" and qe_model is None:
        raise click.UsageError("--qe-backend comet needs --qe-model DIR (a COMET model folder, e.g. "
                               "wmt22-cometkiwi-da)")
    if qe_model is not None and qe_backend is None:
        raise click.UsageError("--qe-model needs --qe-backend")


def _engine_kwargs(backend, device, compute_type, threads, hf_model, endpoint, api_key, served_model) -> dict:
    kwargs: dict[str, Any] = dict(backend=backend, device=device, compute_type=compute_type, threads=threads,
                                  hf_model=hf_model)
    if backend == "openai":
        if not endpoint:
            raise click.UsageError("--backend openai needs --endpoint URL (or $TOWER_CAT_ENDPOINT)")
        kwargs.update(endpoint=endpoint, api_key=api_key, served_model=served_model)
    elif endpoint or served_model:
        raise click.UsageError("--endpoint and --served-model are for --backend openai")
    return kwargs


def _open_tm(spec: str | None, console):
    from tower_cat.tm import open_translation_memory

    def imported(stats) -> None:
        console.print(f"{stats.path}: {stats.units:,} units imported for this run "
                      f"(`tower-cat tm import` keeps them in a database)")

    return open_translation_memory(spec, readonly=True, on_import=imported)


def _preflight(files) -> None:
    """When every input is refused by what its first bytes show (formats.preflight: unknown format, UTF-7, a PO
    header asking for 100 million plural forms), say so before loading a model; otherwise the job reports the
    refused files one by one and does the others."""
    from tower_cat import formats
    from tower_cat.errors import TowerCatError

    refused = []
    for path in files:
        try:
            formats.preflight(path)
        except TowerCatError as exc:
            refused.append(exc)
    if refused and len(refused) == len(files):
        raise refused[0]


def _run(task: str, files, output, in_place, model_dir, glossary_path, tm_path, cache, no_cache, opts,
         engine_kwargs: dict[str, Any], as_json: bool, no_progress: bool, qe: tuple | None = None,
         ray: tuple[str | None, int | None] = (None, None), dry_run: tuple[bool, bool] = (False, False)) -> int:
    """The library does the work (``Translator``: engine, TM, glossary, options; the pipeline over the files);
    the CLI parses flags, opens what they name, shows progress and says errors in its own words."""
    from tower_cat.cli import console as cli_console

    if dry_run[1] and not dry_run[0]:
        raise click.UsageError("--show-prompts needs --dry-run (a real run does not print its prompts)")
    if dry_run[0]:
        if dry_run[1] and as_json:
            raise click.UsageError("--show-prompts prints JSON lines on stdout; leave out --json")
        return _dry_run(task, files, model_dir, glossary_path, tm_path, opts, engine_kwargs, as_json,
                        show_prompts=dry_run[1], qe=qe[0] if qe else None)

    from tower_cat.cli import cli_wording
    from tower_cat.core import Translator, default_cache_path
    from tower_cat.engine import Engine
    from tower_cat.pipeline import plan_outputs, run_files
    from tower_cat.terminology import Glossary

    from tower_cat.outputs import refuse_overlaps

    console = cli_console(stderr=True)
    try:
        outputs = plan_outputs(files, output, in_place)
    except OSError as exc:  # e.g. a name too long for the file system
        raise OutputError(f"cannot write there: {exc.strerror}", path=output) from None
    _preflight(files)
    refuse_overlaps({"--in-place" if in_place else "-o": outputs,
                     "--cache": None if no_cache else (cache or default_cache_path())},
                    {"FILE": None if in_place else files, "--tm": tm_path, "--glossary": glossary_path})
    for folder in ([output] if output is not None and len(files) > 1 else []) + [o.parent for o in outputs]:
        try:  # before any model work: an output folder that cannot be made fails every file in it
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder: {exc.strerror}", path=exc.filename or folder,
                              hint="choose another -o") from None
    glossary = Glossary.load(glossary_path) if glossary_path else None
    memory = _open_tm(tm_path, console)
    cache_path = None if no_cache else (cache or default_cache_path())
    engine = Engine.load(model_dir, cache=cache_path, **engine_kwargs)
    if ray[0]:
        from tower_cat.distributed import RayOptions, use_ray

        use_ray(engine, RayOptions(address=ray[0], actors=ray[1]))
    translator = Translator(engine, tm=memory, glossary=glossary, options=opts)
    try:
        # llm/logprob share the translation engine unless --qe-model names another model
        qe_backend = translator.qe_backend(qe[0], qe[1], **engine_kwargs) if qe else None
        with _progress(console, task, disable=no_progress or as_json) as report:
            summary = run_files(task, files, outputs, engine, tm=memory, glossary=glossary, options=opts,
                                progress=report, qe=qe_backend)
    except KeyboardInterrupt:
        if cache_path is not None:
            console.print(f"Interrupted: nothing was written. Finished translations are kept in {cache_path}; "
                          "run the same command again to continue from there.")
        raise
    finally:
        translator.close()  # the QE model it opened, if any
        engine.close()
        if memory is not None:
            memory.close()
    for f in summary.files:
        if f.exception is not None:
            f.error = str(cli_wording(f.exception))
    if as_json:
        click.echo(summary.to_json())
    else:
        print_summary(summary, console)
    return 1 if summary.failed else 0


def _dry_run(task: str, files, model_dir, glossary_path, tm_path, opts, engine_kwargs: dict[str, Any],
             as_json: bool, *, show_prompts: bool, qe: str | None) -> int:
    """``--dry-run``: the job set up as a real run would (tower_cat.dryrun), nothing generated or written, the
    model's weights never loaded (rendering needs only the tokenizer)."""
    import json

    from tower_cat.cli import console as cli_console

    from tower_cat.cli import cli_wording
    from tower_cat.dryrun import dry_run_files
    from tower_cat.engine import Engine
    from tower_cat.terminology import Glossary

    console = cli_console(stderr=True)
    _preflight(files)
    glossary = Glossary.load(glossary_path) if glossary_path else None
    memory = _open_tm(tm_path, console)
    engine = Engine.load(model_dir, cache=None, **engine_kwargs)
    try:
        plan = dry_run_files(task, files, engine, tm=memory, glossary=glossary, options=opts, qe=qe)
        loaded = engine.stats.generator_loads
    finally:
        engine.close()
        if memory is not None:
            memory.close()
    if loaded:  # the promise of a dry run; a failure here is a bug, not a user error
        raise RuntimeError("the dry run loaded the model's weights")
    summary = plan.summary
    for f in summary.files:
        if f.exception is not None:
            f.error = str(cli_wording(f.exception))
    if show_prompts:
        for record in plan.records:
            click.echo(record.to_json())
    elif as_json:
        data = summary.as_dict()
        data["dry_run"] = {"prompts": plan.distinct_prompts, "prompt_tokens": plan.prompt_tokens,
                           "units_prompted": sum(1 for r in plan.records if not r.task.startswith("qe-"))}
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    t = summary.totals()
    by_reason = ", ".join(f"{n} {k}" for k, n in sorted(t["reasons"].items(), key=lambda kv: -kv[1]))
    units = sum(1 for r in plan.records if not r.task.startswith("qe-"))
    console.print(f"dry run ({task}): {t['units']} units in {len(summary.files)} file(s): {units} would be sent to "
                  f"the model in {plan.distinct_prompts} distinct prompts ({plan.prompt_tokens:,} prompt tokens)"
                  + (f", {t['tm_leveraged']} filled from the TM" if task == "translate" else "")
                  + (f"; not sent: {by_reason}" if by_reason else "")
                  + ". Nothing written; the model's weights were not loaded.")
    if summary.scope:
        console.print(f"scope: {summary.scope}")
    if qe:
        console.print("note: what depends on the model's answers is not shown: QE scores"
                      + (", the post-edits --ape-below sends for low-scoring MT" if task == "translate" else
                         " (every in-scope unit's prompt is shown, marked qe_gated)")
                      + ", terminology repair and instruction retries.")
    for warning in summary.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]", soft_wrap=True)
    for f in summary.files:
        if f.error:
            console.print(f"[red]{f.path}: {f.error}[/red]")
    return 1 if summary.failed else 0


class _progress:
    """A rich progress bar (units, units/s, ETA) on stderr; silent when not a terminal or disabled."""

    def __init__(self, console, task: str, disable: bool):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn(f"[bold]{task}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} units/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, transient=True, disable=disable or not console.is_terminal)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("units", total=None, rate="")

        def report(done: int, total: int) -> None:
            elapsed = self.bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.1f}" if elapsed > 0 else "–"
            self.bar.update(self.task, completed=done, total=total, rate=rate)

        return report

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def summary_table(summary):
    """The end-of-job table: one row per file, one column per outcome."""
    from rich.table import Table

    post = summary.task == "post-edit"
    table = Table(title=f"tower-cat {summary.task}: {summary.seconds:.1f}s "
                        f"(model {summary.model_seconds:.1f}s, {summary.prompts} prompts)")
    qe, ape = summary.qe_backend is not None, summary.ape_below is not None
    cols = ["file", "units"] + (["post-\nedited", "un-\nchanged"] if post else ["TM", "MT"]) + \
           ["skipped", "not\nwritten", "needs\nreview", "tag\nerrors", "terms\nok"] + \
           (["mean\nQE"] if qe else []) + ([f"QE <\n{summary.ape_below:g}", "APE\nimproved"] if ape else [])
    names = [Path(f.path).name for f in summary.files]
    for c in cols:
        if c == "file":
            table.add_column(c, justify="left", no_wrap=True, min_width=min(40, max(map(len, names), default=4)))
        else:
            table.add_column(c, justify="right")
    for f in summary.files:
        if f.error:
            table.add_row(Path(f.path).name, "–", *(["–"] * (len(cols) - 3)), "[red]failed[/red]")
            continue
        rs = f.results
        written = [r for r in rs if r.action in ("tm", "mt", "post-edit") and r.status]
        checked = [r for r in rs if r.terms_ok is not None]
        terms = f"{100 * sum(r.terms_ok for r in checked) / len(checked):.0f} %" if checked else "–"
        tag_errors = sum(1 for r in rs if r.action == "not-written" and (r.reason or "").startswith("codes"))
        if post:
            middle = [sum(1 for r in rs if r.action == "post-edit" and r.status),
                      sum(1 for r in rs if r.action == "post-edit" and not r.status)]
        else:
            middle = [sum(1 for r in rs if r.action == "tm"), sum(1 for r in rs if r.action == "mt")]
        extra = []
        if qe:
            qes = [r.qe for r in rs if r.qe is not None]
            extra.append(f"{sum(qes) / len(qes):.1f}" if qes else "–")
        if ape:
            extra += [str(sum(1 for r in rs if r.ape)), str(sum(1 for r in rs if r.ape == "applied"))]
        table.add_row(Path(f.path).name, str(len(rs)), *map(str, middle),
                      str(sum(1 for r in rs if r.action == "skipped")),
                      str(sum(1 for r in rs if r.action == "not-written")),
                      str(sum(1 for r in written if r.status == "needs-review")), str(tag_errors), terms, *extra)
    return table


def print_summary(summary, console) -> None:
    t = summary.totals()
    console.print(summary_table(summary))
    terms = f"{t['term_compliance']} % of {t['terms_checked']} glossary terms" if t["terms_checked"] else "no glossary terms"
    line = (f"{t['units']} units: {t['tm_leveraged']} from the TM, {t['translated']} machine-translated, "
            f"{t['skipped']} skipped, {t['not_written']} not written, {t['needs_review']} need review; "
            f"{t['tag_repaired']} tag repairs, {t['tag_errors']} tag errors; term compliance: {terms}")
    if summary.task == "post-edit":
        line = (f"{t['units']} units: {t['post_edited']} post-edited, {t['unchanged']} unchanged, "
                f"{t['skipped']} skipped, {t['not_written']} not written; mean TER {t.get('mean_ter')}; "
                f"term compliance: {terms}")
        if summary.scope:
            out_of_scope = sum(n for k, n in t["reasons"].items() if k.startswith("out of scope"))
            line += f"\nscope: {summary.scope} ({out_of_scope} units out of scope)"
    console.print(line)
    for warning in summary.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]", soft_wrap=True)
    if summary.qe_backend is not None:
        scored = "targets" if summary.task == "post-edit" else "machine translations"
        qe_line = f"QE ({summary.qe_backend}): {t['qe_scored']} {scored} scored, mean {t['qe_mean']}"
        if summary.ape_below is not None:
            qe_line += (f"; QE-gated APE: {t['ape_candidates']} below {summary.ape_below:g}, {t['ape_improved']} "
                        f"improved, {t['ape_kept_original']} kept the original, {t['ape_failed']} failed")
        console.print(qe_line)
    for f in summary.files:
        if f.error:
            console.print(f"[red]{f.path}: {f.error}[/red]")
        elif f.output:
            console.print(f"{f.path} -> {f.output}")
    not_written = [(f.path, r) for f in summary.files for r in f.results if r.action == "not-written"]
    for path, r in not_written[:20]:
        console.print(f"[yellow]{path}: unit {r.unit!r} not written: {r.reason}[/yellow]")
    if len(not_written) > 20:
        console.print(f"[yellow]… and {len(not_written) - 20} more (see --json)[/yellow]")
