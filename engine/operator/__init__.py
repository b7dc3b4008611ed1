"""The operator's view: what the engine is doing and why, read from SQLite and the JSONL, never written."""
