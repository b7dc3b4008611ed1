"""`python -m engine ...`: see engine/cli.py.

Ctrl-C while the engine is still being imported (before `main` can answer it) ends in one line and exit code
130, never a traceback: nothing has been opened yet.
"""

import sys

try:
    from engine.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
