"""Where the project's own folders are: the engine ships next to config/, machines/, rules/ and schemas/."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
DEFAULT_CONFIG_DIR = Path("config")
DEFAULT_MACHINES_DIR = Path("machines")
DEFAULT_RULES_DIR = Path("rules")


def shown(path: Path) -> str:
    """A path as the user should see it in a message: relative to the working folder when it is below it, else as
    given. Naming a broken path must never be what breaks a message: a symlink loop makes `resolve` raise
    (RuntimeError before Python 3.13, OSError after), and so does a working folder that was deleted."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def ensure_writable_folder(path: Path) -> None:
    """Make `path` a folder if it is not one and try a write in it: OSError now, rather than a run or a backtest
    that ends having written nothing. The tried file is hidden and removed again."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write-check"
    probe.touch()
    probe.unlink()
