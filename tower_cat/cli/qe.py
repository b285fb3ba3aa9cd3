"""`tower-cat qe` and `tower-cat evaluate`: quality estimation of translated files, metrics against references."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from tower_cat.document import ORIGINS
from tower_cat.errors import TowerCatError

_QUALIFIER_ORIGINS = {"leveraged-mt": "mt", "mt-suggestion": "mt", "exact-match": "tm-exact",
                      "leveraged-tm": "tm-context", "fuzzy-match": "tm-fuzzy", "leveraged-inherited": "tm-exact",
                      "id-match": "tm-context", "leveraged-glossary": "human", "leveraged-repository": "tm-fuzzy"}


def abstract_origin(unit) -> str:
    """The unit's provenance as one of document.ORIGINS, from what the file says (state-qualifier, sdl origin,
    m:trans-origin, a PO comment); "human" when nothing says machine or memory."""
    if unit.edit is not None:
        return unit.edit.origin
    origin = (unit.origin or "").strip().lower()
    if origin in ORIGINS:
        return origin
    if origin in _QUALIFIER_ORIGINS:
        return _QUALIFIER_ORIGINS[origin]
    words = set(re.split(r"[-_ ]", origin))
    if words & {"mt", "nmt"} or origin.startswith("machine"):
        return "mt"
    if origin in ("auto-propagated", "document-match"):
        return "tm-context"
    if "fuzzy" in origin:
        return "tm-fuzzy"
    if "context" in origin or "perfect" in origin:
        return "tm-context"
    if "exact" in origin:
        return "tm-exact"
    if "tm" in origin:
        return "tm-fuzzy"
    return "human"


def mark_for_review(unit) -> str | None:
    """Set the unit's status to needs-review, keeping its target and provenance (a status-only edit: origin,
    origin system and TM match percentage stay as the file has them). Returns why it could not."""
    if unit.target is None:
        return "no target"
    unit.set_status("needs-review")
    return None


def _output_paths(files: tuple[Path, ...], output: Path | None, in_place: bool) -> list[Path | None]:
    if in_place and output is not None:
        raise click.UsageError("use either -o/--output or --in-place, not both")
    if in_place:
        return list(files)
    if output is None:
        return [None] * len(files)
    if len(files) == 1 and not output.is_dir() and not str(output).endswith(("/", "\\")):
        return [output]
    output.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise click.UsageError("two input files share a name; write them one at a time or use --in-place")
    return [output / f.name for f in files]


@click.command("qe")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(["comet", "llm", "logprob"]), default="comet", show_default=True,
              help="comet: a COMET checkpoint folder (CometKiwi for QE); llm: a Tower model as judge; "
                   "logprob: the Tower model's token log-probabilities.")
@click.option("--model", "model", required=True, type=click.Path(exists=True, path_type=Path),
              help="COMET model folder (hparams.yaml + checkpoints/model.ckpt), or a tower-cat model folder "
                   "for llm/logprob.")
@click.option("--encoder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="COMET only: the encoder's config/tokenizer folder (default: MODEL/encoder, then the HF cache).")
@click.option("--threshold", type=click.FloatRange(0, 100), default=None,
              help="Mark units scoring below T (0-100) as needs-review.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the scored file here (a folder when several FILEs are given).")
@click.option("--in-place", is_flag=True, help="Overwrite the input files (atomically).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a report: HTML (self-contained), or JSON/CSV by extension.")
@click.option("--worst", type=int, default=50, show_default=True, help="Segments in the report's worst list.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")
@click.option("--source-lang", default=None, help="Source language when a file declares none (llm/logprob).")
@click.option("--target-lang", default=None, help="Target language when a file declares none (llm/logprob).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="COMET batch size.")
@click.option("--endpoint", default=None, envvar="TOWER_CAT_ENDPOINT", metavar="URL",
              help="llm/logprob: run the model on this OpenAI-compatible server (--model gives its tokenizer and "
                   "family). Default: $TOWER_CAT_ENDPOINT.")
@click.option("--api-key", default=None, envvar="TOWER_CAT_ENDPOINT_KEY", help="--endpoint's API key.")
@click.option("--served-model", default=None, help="--endpoint: the server's model name.")
@click.option("--no-spans", is_flag=True, help="llm: ask for a score only, not for error spans.")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="logprob: calibration JSON to use (or to write with --fit-calibration).")
@click.option("--fit-calibration", "fit_tsv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="logprob: fit the calibration on a held-out TSV (source, mt, human_score "
                                 "columns), save it to --calibration, then score FILEs with it.")
@click.option("--min-spearman", type=click.FloatRange(-1, 1), default=None,
              help="--fit-calibration: refuse a fit whose rank correlation (Spearman) with the held-out human scores "
                   "is below this [default: 0.2].")
@click.option("--force", is_flag=True, help="--fit-calibration: keep a fit that --min-spearman refuses (warned).")
@click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TBX or CSV/TSV glossary: term compliance of every scored unit, in the summary, report and files.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None,
              help="Exit with status 1 when the statistic of --fail-on over all FILEs is below this (0-100).")
@click.option("--fail-on", type=click.Choice(["weighted-mean", "mean", "median", "min"]), default="weighted-mean",
              show_default=True, help="The statistic --fail-under tests (weighted-mean: by source words).")
@click.option("--dry-run", is_flag=True, help="llm: set the scoring up without the model's weights and score nothing "
                                              "(counts; the judge's prompts with --show-prompts).")
@click.option("--show-prompts", is_flag=True, help="With --dry-run: print the judge's prompt for every unit as JSON "
                                                   "lines (file, unit, messages, rendered text, token count).")
def qe(files: tuple[Path, ...], backend: str, model: Path, encoder: Path | None, threshold: float | None,
       output: Path | None, in_place: bool, report: Path | None, worst: int, as_json: bool,
       source_lang: str | None, target_lang: str | None, device: str, batch_size: int, endpoint: str | None,
       api_key: str | None, served_model: str | None, min_spearman: float | None,
       force: bool, glossary: Path | None, fail_under: float | None, fail_on: str, no_spans: bool, calibration: Path | None,
       fit_tsv: Path | None, dry_run: bool = False, show_prompts: bool = False) -> None:
    """Score every translated unit of bilingual FILEs (XLIFF 1.2/2, SDLXLIFF, MQXLIFF, PO) with a QE backend.

    Scores (0-100) are written into the files (its:mtConfidence, sdl percent, mq:percent, a PO comment, ...)
    with -o or --in-place; units below --threshold become needs-review. Locked and approved units are skipped.
    """
    from tower_cat import formats, qe as qe_mod
    from tower_cat.formats import load as load_document
    from tower_cat.report import write_report

    if not files and fit_tsv is None:
        raise click.UsageError("give at least one FILE")
    if backend != "logprob" and (calibration or fit_tsv):
        raise click.UsageError("--calibration and --fit-calibration are for --backend logprob")
    if fit_tsv is not None and calibration is None:
        raise click.UsageError("--fit-calibration needs --calibration OUT.json to save the fit")
    if show_prompts and not dry_run:
        raise click.UsageError("--show-prompts needs --dry-run")
    if dry_run:
        if backend != "llm":
            raise click.UsageError("--dry-run shows what the LLM judge is sent: it is for --backend llm")
        return _dry_run_judge(files, model, device, endpoint, api_key, served_model, not no_spans, source_lang,
                              target_lang, show_prompts)
    outs = _output_paths(files, output, in_place)
    from tower_cat.outputs import refuse_overlaps

    refuse_overlaps({"--in-place" if in_place else "-o": [o for o in outs if o is not None], "--report": report,
                     "--calibration": calibration if fit_tsv is not None else None},
                    {"FILE": None if in_place else files, "--fit-calibration": fit_tsv,
                     "--calibration": calibration if fit_tsv is None else None})

    engine_kwargs: dict = dict(device=device)
    if endpoint:
        if backend == "comet":
            raise click.UsageError("--endpoint is for --backend llm or logprob (COMET runs here)")
        engine_kwargs = dict(backend="openai", endpoint=endpoint, api_key=api_key, served_model=served_model)
    if backend == "comet":
        be = qe_mod.CometBackend(model, encoder=encoder, device=device, batch_size=batch_size)
    elif backend == "llm":
        be = qe_mod.LLMJudgeBackend(model, spans=not no_spans, source_lang=source_lang, target_lang=target_lang,
                                    **engine_kwargs)
    else:
        be = qe_mod.LogprobBackend(model, calibration=None if fit_tsv else calibration, source_lang=source_lang,
                                   target_lang=target_lang, **engine_kwargs)
        if fit_tsv is not None:
            # the held-out set has no language columns: the options, else the first file's languages
            first = load_document(files[0]) if files else None
            items, human = qe_mod.read_heldout_tsv(
                fit_tsv, source_lang=source_lang or (first.source_lang if first else None),
                target_lang=target_lang or (first.target_lang if first else None))
            limit = qe_mod.MIN_SPEARMAN if min_spearman is None else min_spearman
            cal = be.fit(items, human, min_spearman=limit, force=force)
            why = qe_mod.check_calibration(cal, min_spearman=limit)
            if why is not None:
                click.echo(f"warning: calibration kept with --force although {why}", err=True)
            cal.save(calibration)
            click.echo(f"calibration: {len(items)} held-out items, Spearman "
                       f"{cal.spearman if cal.spearman is None else round(cal.spearman, 3)} -> {calibration}",
                       err=True)

    from tower_cat.report import count_words, stats as score_stats

    gloss = None
    if glossary is not None:
        from tower_cat.terminology import Glossary

        gloss = Glossary.load(glossary)
    docs, summary = [], []
    all_scores: list[float] = []
    all_words: list[int] = []
    for path, out in zip(files, outs):
        doc = load_document(path)
        sl, tl = source_lang or doc.source_lang, target_lang or doc.target_lang
        pairs = qe_mod.score_units(doc.units, be, source_lang=sl, target_lang=tl)
        checks = qe_mod.check_units([u for u, _ in pairs], glossary=gloss, doc=doc, source_lang=sl, target_lang=tl)
        marked, unmarkable = [], []
        if threshold is not None:
            for unit, res in pairs:
                if res.score is None or res.score < threshold:
                    why = mark_for_review(unit)
                    if why is None:
                        marked.append(unit.id)
                    else:
                        unmarkable.append(unit.id)
                        click.echo(f"warning: {path}: unit {unit.id!r} scored below the threshold but keeps its "
                                   f"status: {why}", err=True)
        for unit, res in pairs:  # QA, terms and a below-threshold score, where the CAT tool shows comments
            unit.set_findings(qe_mod.findings(unit, res, threshold=threshold, backend=be.describe()))
        if out is not None and pairs:
            formats.save(doc, out)
        elif out is not None and out != path:
            formats.save(doc, out)  # nothing scored: still write the requested copy
        docs.append(doc)
        scores = [r.score for _, r in pairs if r.score is not None]
        words = [count_words(u.source.text) for u, r in pairs if r.score is not None]
        all_scores += scores
        all_words += words
        st = score_stats(scores, words)
        summary.append({
            "weighted_mean": st["weighted_mean"], "median": st["median"], "min": st["min"], "words": st["words"],
            "qa": {"checked": checks["checked"], "errors": checks["qa_errors"], "warnings": checks["qa_warnings"]},
            "terms": {"checked": checks["terms_checked"], "ok": checks["terms_ok"],
                      "compliance": round(100.0 * checks["terms_ok"] / checks["terms_checked"], 1)
                      if checks["terms_checked"] else None},
            "file": str(path), "output": str(out) if out else None, "format": doc.format,
            "units": len(doc.units), "scored": len(scores), "unscored": len(pairs) - len(scores),
            "skipped_protected": sum(1 for u in doc.units if u.has_target and u.protected),
            "mean": sum(scores) / len(scores) if scores else None,
            "threshold": threshold, "below_threshold": marked + unmarkable, "marked": marked,
            "segments": [{"unit": u.id, **r.to_dict(), "words": count_words(u.source.text),
                          "qa": [i.as_dict() for i in u.qa_issues], "terms": u.meta.get("terms")}
                         for u, r in pairs],
        })
    if report is not None and files:
        write_report(report, docs, threshold=threshold, backend=be.describe(), worst=worst)
    total = score_stats(all_scores, all_words)
    gate = None
    if fail_under is not None:
        value = total[{"weighted-mean": "weighted_mean"}.get(fail_on, fail_on)]
        gate = {"statistic": fail_on, "value": value, "fail_under": fail_under,
                "failed": value is None or value < fail_under}
    if as_json:
        click.echo(json.dumps({"backend": be.describe(), "total": total, "gate": gate, "files": summary,
                               "report": str(report) if report else None}, ensure_ascii=False, indent=1))
        if gate is not None and gate["failed"]:
            sys.exit(1)
        return
    for s in summary:
        mean = "-" if s["mean"] is None else f"{s['mean']:.1f}"
        wmean = "-" if s["weighted_mean"] is None else f"{s['weighted_mean']:.1f}"
        line = f"{s['file']}: {s['scored']} scored, word-weighted mean {wmean} (mean {mean})"
        if threshold is not None:
            line += f", {len(s['below_threshold'])} below {threshold:g}"
        if s["unscored"]:
            line += f", {s['unscored']} not scored"
        line += f", QA {s['qa']['errors']} errors / {s['qa']['warnings']} warnings"
        if s["terms"]["checked"]:
            line += f", terms {s['terms']['compliance']:.1f}% ({s['terms']['ok']}/{s['terms']['checked']})"
        if s["output"]:
            line += f" -> {s['output']}"
        click.echo(line)
    if report is not None and files:
        click.echo(f"report: {report}")
    if gate is not None:
        shown = "-" if gate["value"] is None else f"{gate['value']:.1f}"
        click.echo(f"{fail_on} {shown} {'<' if gate['failed'] else '>='} {fail_under:g}: "
                   f"{'FAIL' if gate['failed'] else 'pass'}", err=gate["failed"])
        if gate["failed"]:
            sys.exit(1)


def _dry_run_judge(files, model, device, endpoint, api_key, served_model, spans: bool, source_lang, target_lang,
                   show_prompts: bool) -> None:
    """``qe --backend llm --dry-run``: the judge's prompts for every unit it would score (tower_cat.dryrun), rendered
    as the engine would; the model's weights are never loaded and nothing is written."""
    from tower_cat import qe as qe_mod
    from tower_cat.dryrun import qe_prompt_records
    from tower_cat.formats import load as load_document

    kwargs: dict = dict(device=device, cache=None)
    if endpoint:
        kwargs = dict(backend="openai", endpoint=endpoint, api_key=api_key, served_model=served_model, cache=None)
    judge = qe_mod.LLMJudgeBackend(model, spans=spans, source_lang=source_lang, target_lang=target_lang, **kwargs)
    records = []
    try:
        for path in files:
            doc = load_document(path)
            units = [u for u in doc.units if qe_mod.scorable(u)]
            items = [qe_mod.unit_item(u, source_lang or doc.source_lang, target_lang or doc.target_lang)
                     for u in units]
            records += qe_prompt_records(judge, items, [(str(path), str(u.id)) for u in units])
        loaded = judge.engine.stats.generator_loads
    finally:
        judge.engine.close()
    if loaded:
        raise RuntimeError("the dry run loaded the model's weights")
    if show_prompts:
        for r in records:
            click.echo(r.to_json())
    units = len({(r.file, r.unit) for r in records})
    click.echo(f"dry run (qe llm): {units} units in {len(files)} file(s) would be scored with {len(records)} prompts "
               f"({sum(r.tokens for r in records):,} prompt tokens). Nothing written; the model's weights were not "
               "loaded.", err=True)


@click.command("evaluate")
@click.option("--hyp", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Hypotheses: plain text (one segment per line), TMX, or a bilingual file (its targets).")
@click.option("--ref", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="References, in any of the same forms.")
@click.option("--src", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sources (for COMET), when the hypothesis file is not bilingual.")
@click.option("--comet", type=click.Path(exists=True, path_type=Path), default=None,
              help="A COMET model folder: adds the COMET system score.")
@click.option("--encoder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The COMET encoder's config/tokenizer folder (default: COMET/encoder, then the HF cache).")
@click.option("--target-lang", default=None, help="Pick sacrebleu's BLEU tokenizer for zh/ja/ko (as -tl).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(hyp: Path, ref: Path, src: Path | None, comet: Path | None, encoder: Path | None,
             target_lang: str | None, device: str, as_json: bool) -> None:
    """BLEU, chrF and TER (sacrebleu, with signatures) of --hyp against --ref, and COMET with --comet."""
    from tower_cat import metrics
    from tower_cat.qe import CometBackend

    hyps, refs, srcs = metrics.align(hyp, ref, src)
    backend = CometBackend(comet, encoder=encoder, device=device) if comet is not None else None
    if backend is not None and srcs is None:
        raise TowerCatError("COMET needs the sources", hint="pass --src, or bilingual hypothesis files")
    scores = metrics.evaluate(hyps, refs, srcs, comet=backend, target_lang=target_lang)
    if as_json:
        click.echo(json.dumps(scores.to_dict(), ensure_ascii=False, indent=1))
        return
    click.echo(f"segments: {scores.n}")
    click.echo(f"BLEU  {scores.bleu:6.2f}  {scores.signatures['bleu']}")
    click.echo(f"chrF  {scores.chrf:6.2f}  {scores.signatures['chrf']}")
    click.echo(f"TER   {scores.ter:6.2f}  {scores.signatures['ter']}")
    if scores.comet is not None:
        click.echo(f"COMET {scores.comet:6.2f}  {scores.comet_model}")
