"""What a command writes must not be what it reads: one check for every command that writes.

``tower-cat tm export --db t.sqlite -o t.sqlite`` once wrote TMX over the TM it was exporting, and exited 0.
:func:`refuse_overlaps` takes the files a command will write and the files it reads or keeps open (inputs,
TM, cache, sessions, glossary, state), each under the name the user gave it (a flag), and refuses when two of
them are the same file: by resolved path (the file may not exist yet; symlinked folders resolve), and for
files that exist by identity (``os.path.samefile``: same device and inode, so hard links and symlinks are
caught too). URLs (``postgresql://…``) and ``:memory:`` are not files and are skipped. Commands that write a
folder (``convert``, ``finetune``) use :func:`refuse_output_folder_overlaps`, which also refuses an output folder
that holds one of the inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Union

from tower_cat.errors import OutputError

PathLike = Union[str, os.PathLike]
Paths = Union[PathLike, Iterable[PathLike], None]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file: the same resolved path, or (both existing) the same
    device and inode."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare what exists
        pass
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist (yet): the resolved paths decided
        return False


def _files(paths: Paths) -> list[Path]:
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        if p is None:
            continue
        s = os.fspath(p)
        if not s or s == ":memory:" or "://" in s:
            continue
        out.append(Path(s))
    return out


def refuse_overlaps(writes: Mapping[str, Paths], reads: Mapping[str, Paths] | None = None) -> None:
    """Raise :class:`OutputError` when a file in ``writes`` is also in ``reads``, or twice in ``writes``.

    Keys are what the user calls each file (``"-o"``, ``"--db"``, ``"input"``); values a path, several paths,
    or None (not given).
    """
    written = [(role, p) for role, paths in writes.items() for p in _files(paths)]
    read = [(role, p) for role, paths in (reads or {}).items() for p in _files(paths)]
    for i, (wrole, w) in enumerate(written):
        for rrole, r in written[i + 1:] + read:
            if same_file(w, r):
                what = "the same file as" if str(w) == str(r) or Path(w).name == Path(r).name else \
                    "the same file (a link) as"
                raise OutputError(f"refusing to write {wrole}: it is {what} {rrole} {r}", path=w,
                                  hint=f"give {wrole} another file")


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` lies under ``folder``: by resolved path, or (``folder`` existing) when one of the
    folders above ``path`` is ``folder`` itself by device and inode (a bind mount, another name for it)."""
    try:
        resolved, resolved_folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a symlink loop: nothing sensible lies under it
        return False
    if resolved_folder in resolved.parents:
        return True
    try:
        target = os.stat(resolved_folder)
    except OSError:  # the output folder does not exist yet: the resolved paths decided
        return False
    for parent in resolved.parents:
        try:
            st = os.stat(parent)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def refuse_output_folder_overlaps(writes: Mapping[str, Paths], reads: Mapping[str, Paths]) -> None:
    """Raise :class:`OutputError` when an output FOLDER is one of the paths a command reads, or holds one.

    Commands that write a folder (``finetune``'s checkpoints and exports, ``convert``) empty or replace what is in
    it (``finetune train`` clears its ``--out`` before moving the final model in), so an input anywhere below the
    output folder, a TMX or the base model alike, is as much at risk as an input given as the folder itself.
    The output folder may not exist yet. An output folder below a read folder is allowed: writing there replaces
    none of the read folder's files (commands that read a sub-folder, ``--data D`` reading ``D/sft``, list it).
    """
    refuse_overlaps(writes, reads)
    for wrole, paths in writes.items():
        for folder in _files(paths):
            for rrole, read_paths in reads.items():
                for read in _files(read_paths):
                    if _inside(read, folder):
                        raise OutputError(f"refusing to write {wrole} {folder}: {rrole} {read} is inside it",
                                          path=folder, hint=f"give {wrole} another folder")


__all__ = ["refuse_output_folder_overlaps", "refuse_overlaps", "same_file"]
