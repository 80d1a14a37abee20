"""Safe file input/output shared by datasets, runs and the checkpoint zoo.

* Results are written atomically (temp file in the same folder + ``os.replace``)
  so a killed run never leaves a half-written JSON or checkpoint behind.
* Tensors are read with ``torch.load(weights_only=True)``: a pickle that carries
  code is refused instead of executed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

from nnzoo.errors import NnzooError


def shipped_folder(name: str, env_var: str | None) -> Path:
    """``$env_var``, the repository's top-level ``name/``, or the copy inside the installed wheel.

    Configs, benchmark suites and checkpoints live at the top of the repository (where
    contributors edit them) and are also packaged as ``nnzoo/<name>``, so a plain
    ``pip install`` (not editable) finds them too.
    """
    from importlib import resources
    if env_var and os.environ.get(env_var):
        return Path(os.environ[env_var])
    repo = Path(__file__).resolve().parent.parent / name
    if repo.is_dir():
        return repo
    return Path(str(resources.files("nnzoo") / name))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    The temporary file lives in the target's own folder (a rename across filesystems is a copy, not atomic),
    is fsynced before the rename and the folder after it, so at every instant ``path`` holds either the old
    complete file or the new complete one: a kill -9, a full disk (ENOSPC) or a file-size limit (EFBIG) while
    writing loses nothing that was saved before.  A failed write raises one line naming the file."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results should read like any other file
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk, so a rename never publishes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if path.is_dir() and exc.errno in (errno.EINVAL, errno.EBADF):  # some filesystems cannot sync folders
            return
        raise
    finally:
        os.close(fd)


def write_error(path: Path, exc: OSError) -> NnzooError:
    """One line for a failed write: which file, why, and that the previous version (if any) is intact."""
    why = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file larger than the size limit (ulimit -f)",
           errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only filesystem",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.ENAMETOOLONG: "file name too long"}.get(exc.errno, exc.strerror or exc.__class__.__name__)
    kept = " (its previous version, if any, is unchanged)" if path.exists() else ""
    return NnzooError(f"cannot write {path}: {why}{kept}; free space or choose another folder, then run again")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically.  NaN and infinities become ``null``: Python's ``NaN``
    is not JSON, and a metrics file must stay readable by every JSON parser."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_or_none(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) replaced by ``None``, in nested dicts and lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_tensors(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically (only tensors/containers: loadable with weights_only).

    Deterministic: the same ``obj`` gives the same bytes.  ``torch.save`` to a path names the zip's records
    after the file (here a random temp name); to an open file it uses the fixed name ``archive``."""
    import torch  # here, not at the top: `nnzoo list` reads configs and caches without torch
    buffer = BytesIO()  # serialised first: a failing write then raises the OSError itself (ENOSPC, EFBIG), not
    torch.save(obj, buffer)  # torch's zip writer's "unexpected pos"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON with a one-line error naming the file on failure."""
    p = Path(path)
    if not p.is_file():
        raise NnzooError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of over 4,300 digits
        raise NnzooError(f"{what} {p} is not valid JSON ({exc.__class__.__name__}: {exc}); "
                         "restore or regenerate it") from None
    except RecursionError:  # [[[[... nested deeper than Python's parser goes: not a ValueError
        raise NnzooError(f"{what} {p} is nested too deeply to parse; restore or regenerate it") from None
    except IsADirectoryError:
        raise NnzooError(f"{what} {p} is a folder, not a file") from None


def load_tensors(path: str | os.PathLike, what: str = "file") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing, corrupt or unsafe files."""
    import torch
    p = Path(path)
    if not p.is_file():
        raise NnzooError(f"{what} not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types: UnpicklingError, RuntimeError, EOFError...
        text = str(exc)
        noise = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
        msg = lines[0] if lines else exc.__class__.__name__
        if "GLOBAL" in text or "Unsupported global" in text:  # a class/function reference: code, not data
            raise NnzooError(f"refusing to load {p}: it contains pickled code, not just tensors "
                             "(only plain state dicts are accepted; re-save it with torch.save(state_dict))"
                             ) from None
        if "Unsupported operand" in text and _starts_with(p, b"\x80"):  # a raw pickle (PROTO opcode), not torch.save
            raise NnzooError(f"cannot read {what} {p}: a plain pickle, not a torch.save file (pickles are never "
                             "unpickled here); save the tensors with torch.save(state_dict)") from None
        raise NnzooError(f"cannot read {what} {p}: corrupt or not a torch file ({msg[:160]}); "
                         "restore or replace it") from None


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(prefix)) == prefix


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (used by the checkpoint zoo and dataset caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_home() -> Path:
    """Where built datasets and caches live: ``$NNZOO_HOME`` or ``~/.cache/nnzoo``."""
    home = Path(os.environ.get("NNZOO_HOME", Path.home() / ".cache" / "nnzoo")).expanduser()
    if home.exists() and not home.is_dir():
        raise NnzooError(f"the cache folder {home} is a file, not a folder; point NNZOO_HOME at a folder")
    return home


def existing_output(path: str | os.PathLike, option: str) -> bool:
    """Whether an output about to be written exists; only a regular file may (``--force`` replaces it).

    Outputs are written to a temporary file that is renamed over ``path``, which would swap a symlink, a
    FIFO or a device node for a regular file (run as root, ``--output /dev/null --force`` would replace the
    system's node): those are refused in one line, with or without ``--force``, and so is a dangling
    symlink, which ``Path.exists`` does not see."""
    import stat
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError:
        return False  # e.g. a parent that is a file: the write names it
    if stat.S_ISREG(mode):
        return True
    kinds = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISCHR, "device node"), (stat.S_ISBLK, "device node"), (stat.S_ISSOCK, "socket"))
    kind = next((name for test, name in kinds if test(mode)), "special file")
    raise NnzooError(f"{option}: {path} is a {kind}, not a regular file; nnzoo replaces only regular files, "
                     "even with --force: name another file or remove it")
