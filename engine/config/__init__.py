"""The user's configuration: YAML with positions, schema validation, typed objects, consistency checks."""
