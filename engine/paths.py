"""Where the project's own folders are: the engine ships next to config/, machines/, rules/ and schemas/."""

import enum
import os
import stat
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
DEFAULT_CONFIG_DIR = Path("config")
DEFAULT_MACHINES_DIR = Path("machines")
DEFAULT_RULES_DIR = Path("rules")


def shown(path: Path) -> str:
    """A path as the user should see it in a message: relative to the working folder when it is below it, else as
    given. A symlink is named as itself, not as what it points to: `config/settings.yaml`, linked to a file that is
    gone, was reported as the target the user never typed. Naming a broken path must never be what breaks a
    message: a symlink loop makes `resolve` raise (RuntimeError before Python 3.13, OSError after), and so does a
    working folder that was deleted."""
    try:
        here = Path.cwd()
    except OSError:
        return str(path)
    if ".." not in path.parts:  # as written first, no link followed (with `..`, only resolving says where it is)
        try:
            return str(Path(os.path.abspath(path)).relative_to(here))
        except ValueError:
            pass
    try:
        return str(path.resolve().relative_to(here.resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def escaped(text: str, keep: str = "") -> str:
    """`text` as a terminal may show it, for a message that echoes what the user gave (a path, a bot id): every
    character that is not printable as its Python escape (an escape sequence would be acted on, a carriage return
    would hide what came before it, a newline in a file's name would split its problem over two lines), except
    those in `keep`; bytes that are no UTF-8 (a path's surrogates) as \\xNN, so that printing never raises."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def ensure_writable_folder(path: Path) -> None:
    """Make `path` a folder if it is not one and try a write in it: OSError now, rather than a run or a backtest
    that ends having written nothing. The tried file is hidden, of a name no other process uses at the same time,
    and removed again: with one name for every process, two commands trying one folder at once (two backtests given
    the same --out, two `run --record` into one folder) removed each other's, and the second was told ENOENT, "cannot
    write there", for a folder it could write."""
    import tempfile

    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
    os.close(fd)
    os.unlink(probe)


def folders_to_make(folder: Path) -> list[Path]:
    """`folder` and the folders above it that are not there now, deepest first: what `mkdir(parents=True)` would
    make, so that a command that then writes nothing can remove them again (a fetch or a recording that failed
    before its first write left a folder holding only its lock file)."""
    absent: list[Path] = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        absent.append(path)
    return absent


def remove_unused(lock_file: Path, made: list[Path]) -> None:
    """Remove a lock file a command made and the folders it made for it (`folders_to_make`), each only while empty:
    what another process put there meanwhile stays, and so does all above it."""
    try:
        lock_file.unlink()
        for path in made:
            path.rmdir()
    except OSError:  # not empty, or not ours to remove: left as it is
        return


class PathKind(enum.Enum):
    """What `path_kind` found. Only a fact, never a message: each caller says it in its own words and decides
    which kinds are bad input and which a failure of the moment."""

    NOTHING = "nothing"
    LINK_TO_NOTHING = "a link to nothing"
    FILE = "a regular file"
    FOLDER = "a folder"
    FIFO = "a FIFO"
    SOCKET = "a socket"
    DEVICE = "a device"
    OTHER = "another kind"  # what some systems have and Linux does not (a Solaris door, a BSD whiteout)

    @property
    def absent(self) -> bool:
        """Nothing to open either way: most callers treat a link to nothing as no file at all."""
        return self in (PathKind.NOTHING, PathKind.LINK_TO_NOTHING)


def path_kind(path: Path) -> PathKind:
    """What is at `path`, a link followed, found without opening it: opening a FIFO waits for a writer forever and
    a device may never end, so what the engine is given is judged by this first. An OSError other than "not
    found" (a folder that may not be searched, a file on the way, a symlink loop) passes through, because only the
    caller knows whether it is bad input or a failure of the moment, and how to say it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        try:  # a link whose target is missing: told apart, since using it would make a file somewhere else
            return PathKind.LINK_TO_NOTHING if stat.S_ISLNK(path.lstat().st_mode) else PathKind.NOTHING
        except FileNotFoundError:
            return PathKind.NOTHING
    if stat.S_ISREG(mode):
        return PathKind.FILE
    if stat.S_ISDIR(mode):
        return PathKind.FOLDER
    if stat.S_ISFIFO(mode):
        return PathKind.FIFO
    if stat.S_ISSOCK(mode):
        return PathKind.SOCKET
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return PathKind.DEVICE
    return PathKind.OTHER


def unusable_output(path: Path, *, state: bool) -> str | None:
    """Why `run` could not use `path` for its state file (`state`) or its log, looked at without opening it; None
    when nothing is wrong that can be seen before. A state file that is a FIFO, a device or a socket (SQLite would
    hang or fail with "disk I/O error"), a path below a regular file, a link to nothing (using it would make a file
    wherever the link points). A folder is left to the store and the journal, which say it in their own words; a
    log may be a FIFO or a device, which the journal judges. One judgement for the command line's --state-db and
    --log and for settings.yaml's paths, so `--validate` passes exactly what `run` accepts."""
    try:
        found = path_kind(path)
    except OSError as exc:  # a file on the way (ENOTDIR), a symlink loop, a folder that may not be searched
        return f"cannot be used ({exc.strerror or exc})"
    if found is PathKind.LINK_TO_NOTHING:
        return "a link to nothing"
    if found is not PathKind.NOTHING:
        if state and found not in (PathKind.FILE, PathKind.FOLDER):
            return "not a regular file (a FIFO, a device or a socket)"
        return None
    for parent in path.parents:  # not there yet: it will be made in the first folder that exists
        try:
            parent_found = path_kind(parent)
        except OSError:
            return None  # said by whoever opens it, in its own words
        if parent_found.absent:
            continue
        if parent_found is not PathKind.FOLDER:
            return f"{parent} is not a folder"
        return None
    return None
