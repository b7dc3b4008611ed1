"""Named guards, preflight checks, kill conditions and signals: the `rules/` folder, compiled and evaluated."""
