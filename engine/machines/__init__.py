"""The machines: YAML state machines, their lint, their runtime on `transitions`, and their renderers."""
