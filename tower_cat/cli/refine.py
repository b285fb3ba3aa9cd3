"""`tower-cat refine`: interactive translation of one segment in the terminal (README: "Interactive translation and instructions").

The model translates TEXT, then every line typed is an instruction ("more formal", "max 40 characters",
"use 'Notiz'"); each revision is shown with a word diff to the previous one and the outcome of the verifiable
instructions. ``:accept`` stores the current revision in the TM (``--tm``), ``:undo`` drops the last revision,
``:quit`` leaves. With ``--instruction`` (repeatable) it runs without prompting and prints the final result.
Inline codes are written as numbered tags (``Click <1>Save</1><2/>``) and kept through every revision.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

import click

HELP = """Type an instruction for the next revision, or a command:
  :accept [N]   accept the current revision (or revision N) and store it in the TM, then quit
  :accept! [N]  accept even if the inline codes could not be restored safely
  :undo         drop the last revision
  :history      show every revision
  :quit         leave without accepting (also Ctrl-D)"""

_TOKEN = re.compile(r"\s+|<\s*/?\s*\d+\s*/?\s*>|\w+|[^\w\s]", re.UNICODE)


def word_diff(old: str, new: str):
    """A rich Text: words removed from ``old`` struck through in red, words added in ``new`` in green."""
    from rich.text import Text

    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append("".join(a[i1:i2]))
            continue
        if op in ("delete", "replace"):
            out.append("".join(a[i1:i2]), style="red strike")
        if op in ("insert", "replace"):
            out.append("".join(b[j1:j2]), style="bold green")
    return out


def _shown(turn, tags: bool) -> str:
    from tower_cat.sessions import segment_markup

    return segment_markup(turn.segment) if tags else turn.segment.text


class _View:
    def __init__(self, console, tags: bool):
        self.console = console
        self.tags = tags

    def turn(self, session, index: int, diff: bool = True) -> None:
        from rich.markup import escape

        c = self.console
        turn = session.turns[index]
        label = "Translation" if index == 0 else f"Revision {index}"
        c.print(f"[bold cyan]{label}[/]" + (f" [dim]({escape(turn.instruction)})[/]" if turn.instruction else ""))
        text = _shown(turn, self.tags)
        c.print(text, markup=False, highlight=False)
        if diff and index > 0:
            prev = _shown(session.turns[index - 1], self.tags)
            if prev != text:
                c.print("[dim]changes:[/] ", end="")
                c.print(word_diff(prev, text))
            else:
                c.print("[dim]no change[/]")
        for r in turn.report.results:
            mark = "[green]✓[/]" if r.passed else "[red]✗[/]"
            what = f"{r.kind.replace('_', ' ')}" + (f" {r.check.value}" if r.check.value is not None else "")
            c.print(f"  {mark} {escape(what)}" + ("" if r.passed else f": {escape(r.message)}"))
        if turn.report.retried:
            c.print("  [dim]retried once: the first answer failed "
                    + escape("; ".join(turn.report.first_failed)) + "[/]")
        if turn.problems:
            style = "yellow" if turn.ok else "red"
            head = "codes repaired" if turn.ok else "codes need review"
            c.print(f"  [{style}]{head}:[/] " + escape("; ".join(turn.problems)))
        if turn.truncated:
            c.print("  [yellow]the answer hit the token limit and may be cut off (raise --max-new-tokens)[/]")
        if turn.dropped:
            c.print(f"  [dim]{turn.dropped} earlier exchange(s) left out to fit the model's context[/]")


def _accept(manager, session, arg: str, force: bool, console, tm_path) -> bool:
    from tower_cat.sessions import SessionError

    turn = None
    if arg:
        try:
            turn = int(arg)
        except ValueError:
            console.print(f"[red]not a revision number: {arg}[/]")
            return False
    try:
        accepted = manager.accept(session, turn, force=force)
    except SessionError as exc:
        console.print(f"cannot accept: {exc}", markup=False, style="red")
        return False
    where = (f"stored in {tm_path} (entry {accepted.tm_entry})" if accepted.tm_entry is not None
             else "not stored: no --tm given")
    console.print(f"[bold green]Accepted[/] revision {accepted.turn}: {where}")
    return True


def _interactive(manager, session, console, view: _View, tm_path) -> int:
    console.print(f"[dim]session {session.id} — :help for commands[/]")
    view.turn(session, len(session.turns) - 1, diff=False)
    from tower_cat.errors import TowerCatError

    while True:
        try:
            line = console.input("[bold]instruction>[/] ")
        except EOFError:
            console.print()
            return 0
        except KeyboardInterrupt:
            console.print()
            return 130
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            cmd, _, arg = line[1:].partition(" ")
            cmd, arg = cmd.strip().lower(), arg.strip()
            if cmd in ("q", "quit", "exit"):
                return 0
            if cmd in ("h", "help", "?"):
                console.print(HELP, markup=False)
            elif cmd in ("accept", "accept!", "a", "a!"):
                if _accept(manager, session, arg, cmd.endswith("!"), console, tm_path):
                    return 0
            elif cmd in ("undo", "u"):
                try:
                    session = manager.undo(session)
                except TowerCatError as exc:
                    console.print(f"[red]{exc}[/]", markup=False)
                    continue
                console.print("[dim]undone[/]")
                view.turn(session, len(session.turns) - 1, diff=False)
            elif cmd in ("history", "hist"):
                for i in range(len(session.turns)):
                    view.turn(session, i, diff=False)
            else:
                console.print(f"unknown command :{cmd} — :help lists them", markup=False)
            continue
        try:
            session = manager.revise(session, line)
        except TowerCatError as exc:
            console.print(f"error: {exc}", markup=False, style="red")
            continue
        view.turn(session, len(session.turns) - 1)


@click.command("refine")
@click.argument("text", required=False)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A folder made by `tower-cat convert`.")
@click.option("--source", "-s", "source_lang", required=True, help="Source language code, e.g. en.")
@click.option("--target", "-t", "target_lang", required=True, help="Target language code, e.g. de.")
@click.option("--instruction", "-i", "instructions", multiple=True,
              help="Run without prompting: one revision per instruction (repeatable), then print the result.")
@click.option("--first", "first", multiple=True,
              help="An instruction for the first translation itself (repeatable).")
@click.option("--tm", "tm_path", metavar="DB|URL",
              help="Translation memory (a SQLite file or a postgresql:// URL; default: $TOWER_CAT_TM_URL): fuzzy "
                   "matches as examples; :accept stores the result there.")
@click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Glossary (TBX, CSV/TSV): its terms go into the request and revisions are checked.")
@click.option("--max-length", type=int, help="The segment's length limit (for 'fit the maxwidth').")
@click.option("--accept", "accept_at_end", is_flag=True, help="With --instruction: accept the final revision.")
@click.option("--force", is_flag=True, help="With --accept: accept even if the inline codes need review.")
@click.option("--json", "as_json", is_flag=True, help="With --instruction: print the whole session as JSON.")
@click.option("--sessions", "sessions_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the session in this SQLite file (to --resume it later).")
@click.option("--resume", "resume_id", help="Continue a session stored with --sessions.")
@click.option("--no-tags", is_flag=True, help="TEXT has no inline codes: <1> is literal text.")
@click.option("--backend", type=click.Choice(["ct2", "transformers", "openai"]), default="ct2", show_default=True,
              help="openai: a remote OpenAI-compatible server (--endpoint).")
@click.option("--endpoint", default=None, envvar="TOWER_CAT_ENDPOINT", metavar="URL",
              help="--backend openai: the server's base URL (default: $TOWER_CAT_ENDPOINT).")
@click.option("--api-key", default=None, envvar="TOWER_CAT_ENDPOINT_KEY", help="--endpoint's API key.")
@click.option("--served-model", default=None, help="--backend openai: the server's model name.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1.")
@click.option("--compute-type", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: all available).")
@click.option("--hf-model", default=None, help="Original HF folder for --backend transformers.")
@click.option("--max-new-tokens", type=int, default=512, show_default=True)
@click.option("--no-cache", is_flag=True, help="Do not read or write the generation cache.")
def refine(text, model_dir, source_lang, target_lang, instructions, first, tm_path, glossary, max_length,
           accept_at_end, force, as_json, sessions_path, resume_id, no_tags, backend, endpoint, api_key, served_model,
           device, compute_type, threads, hf_model, max_new_tokens, no_cache):
    """Translate TEXT and refine it with instructions, interactively (BayLing-style)."""
    from tower_cat.cli import console as cli_console

    from tower_cat.core import default_cache_path
    from tower_cat.engine import Engine, GenerationOptions
    from tower_cat.errors import TowerCatError
    from tower_cat.sessions import SessionManager, SessionStore

    if not text and not resume_id:
        raise click.UsageError("give the TEXT to translate (or --resume a stored session)")
    if resume_id and not sessions_path:
        raise click.UsageError("--resume needs the --sessions file the session is stored in")
    from tower_cat.outputs import refuse_overlaps

    refuse_overlaps({"--sessions": sessions_path, "--tm": tm_path}, {"--glossary": glossary})
    console = cli_console()
    if backend == "openai" and not endpoint:
        raise click.UsageError("--backend openai needs --endpoint URL (or $TOWER_CAT_ENDPOINT)")
    remote = dict(endpoint=endpoint, api_key=api_key, served_model=served_model) if backend == "openai" else {}
    engine = Engine.load(model_dir, device=device, compute_type=compute_type, threads=threads, backend=backend,
                         hf_model=hf_model, cache=None if no_cache else default_cache_path(), **remote)
    from tower_cat.tm import open_translation_memory

    tm = open_translation_memory(tm_path)  # None: $TOWER_CAT_TM_URL, else no TM
    tm_path = tm.path if tm is not None else None  # a URL without its password
    gloss = None
    if glossary:
        from tower_cat.terminology import Glossary

        gloss = Glossary.load(glossary)
    store = SessionStore(sessions_path or ":memory:")
    manager = SessionManager(engine, store, tm=tm, glossary=gloss,
                             options=GenerationOptions(max_new_tokens=max_new_tokens))
    view = _View(console, tags=not no_tags)
    try:
        if resume_id:
            session = manager.get(resume_id)
        else:
            with console.status("translating…") if sys.stdout.isatty() else _nothing():
                session = manager.start(text, source_lang, target_lang, instructions=list(first),
                                        max_length=max_length, markup=not no_tags)
        if not instructions:
            return _interactive(manager, session, console, view, tm_path)
        for instruction in instructions:
            session = manager.revise(session, instruction)
        if accept_at_end:
            accepted = manager.accept(session, force=force)
            session = manager.get(session.id) if sessions_path else session
            if not as_json:
                where = f"entry {accepted.tm_entry} in {tm_path}" if accepted.tm_entry is not None else "no --tm"
                click.echo(f"accepted revision {accepted.turn} ({where})", err=True)
        if as_json:
            click.echo(json.dumps(session.as_dict(), ensure_ascii=False, indent=2))
        else:
            click.echo(_shown(session.current, not no_tags))
            for r in session.current.report.failed:
                click.echo(f"warning: {r.kind}: {r.message}", err=True)
            if not session.current.ok:
                click.echo("warning: the inline codes need review: " + "; ".join(session.current.problems), err=True)
        return 0
    except TowerCatError:
        raise
    finally:
        store.close()
        if tm is not None:
            tm.close()
        engine.close()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
