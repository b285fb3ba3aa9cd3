"""`tower-cat ARGS` run in-process through the real entry point, for tests that check exit codes and messages."""

from __future__ import annotations

from tower_cat.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``tower-cat ARGS``: the entry point turns errors into one line and exit 2."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
