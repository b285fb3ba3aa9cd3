"""The ``tower-cat`` command: a thin shell over the library.

Commands live in small modules and are imported only when used, so ``tower-cat inspect`` starts in a fraction
of a second and never imports torch or CTranslate2.
"""

from __future__ import annotations

import importlib
import sys

import click

from tower_cat.errors import TowerCatError

# command name -> "module:attribute"
LAZY_COMMANDS: dict[str, str] = {
    "inspect": "tower_cat.cli.files:inspect_cmd",
    "analyze": "tower_cat.cli.analyze:analyze",
    "validate": "tower_cat.cli.files:validate_cmd",
    "pseudo": "tower_cat.cli.files:pseudo_cmd",
    "qe": "tower_cat.cli.qe:qe",
    "evaluate": "tower_cat.cli.qe:evaluate",
    "tm": "tower_cat.cli.tm:tm",
    "terms": "tower_cat.cli.tm:terms",
    "convert": "tower_cat.cli.models:convert",
    "doctor": "tower_cat.cli.doctor:doctor",
    "translate-text": "tower_cat.cli.models:translate_text",
    "refine": "tower_cat.cli.refine:refine",
    "finetune": "tower_cat.finetune.cli:finetune",
    "serve": "tower_cat.adapters.cli:serve",
    "translate": "tower_cat.cli.translate:translate",
    "post-edit": "tower_cat.cli.translate:post_edit",
}


# library parameter -> what the CLI says instead of the library's hint (errors name parameters, not flags)
CLI_HINTS: dict[str, str] = {
    "source_lang": "pass --source, e.g. --source en",
    "target_lang": "pass --target, e.g. --target de",
    "output": "use -o OUT (a file for one input, a folder for several), or --in-place",
    "in_place": "give either -o OUT or --in-place, not both",
    "qe": "pass --qe-backend",
    "model": "pass --model DIR (a folder made by `tower-cat convert`)",
    "device": "use --device cpu",
    "references": "give references (tower-cat evaluate --ref), or use a reference-free model such as "
                  "wmt22-cometkiwi-da for quality estimation",
    "languages": "the file declares none; pass --source-lang and --target-lang",
    "calibration": "fit one with `tower-cat qe --backend logprob --fit-calibration HELD_OUT.tsv`",
    "sources": "pass --src (or bilingual files with sources)",
    "force": "choose another folder or pass --force to overwrite it",
    "qe_model": "--qe-backend comet needs --qe-model DIR (a COMET model folder, e.g. wmt22-cometkiwi-da)",
    "sessions": "give a writable file path (--sessions FILE)",
    "endpoint": "pass --endpoint URL (or set $TOWER_CAT_ENDPOINT)",
    "device_list": "pass e.g. --device cuda or 0,1",
    "backend_hf": "run `tower-cat convert` on it, or use --backend transformers",
    "backend_ct2": "use --backend ct2",
    "hf_model": "pass --hf-model DIR",
    "tm_languages": "pass --source and --target",
    "data_languages": "check --source/--target match the languages in the files",
    "lenient": "fix the header's charset, or pass --lenient to read the file as declared",
    "heldout": "raise --heldout",
    "served_model": "name one with --served-model",
    "ray": "start one with `ray start --head`, or use --ray local",
    "ray_remote": "use either --ray or --backend openai",
}


def console(stderr: bool = False):
    """The console every command prints through: no syntax highlighting, and lines are not hard-wrapped at the
    terminal width (a summary naming a long path stays one line in logs and for grep)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def cli_wording(exc: TowerCatError) -> TowerCatError:
    """A library error as the CLI says it: the hint names the flag for the parameter the library named."""
    hint = CLI_HINTS.get(exc.param or "")
    if hint is not None:
        if exc.param == "in_place":
            exc.message = "give either -o OUT or --in-place, not both"
            hint = None
        elif exc.param == "output" and exc.hint and "another" in exc.hint:
            hint = "choose another -o, or pass --in-place"
        exc.with_hint(hint)
    return exc


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tower-cat")
def cli() -> None:
    """Translate, post-edit and quality-check localization files with Tower-family LLMs."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: tower-cat errors become one clear line on stderr and exit code 2, not a traceback."""
    try:
        # standalone_mode=False: click returns the code of ctx.exit(n) instead of exiting (and the command's
        # return value otherwise), so a command's "exit 1" must be turned into the process exit status here.
        rv = cli.main(args=argv, prog_name="tower-cat", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TowerCatError as exc:
        click.echo(f"error: {cli_wording(exc)}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file that cannot be read or written: one line naming it, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":
    main()
