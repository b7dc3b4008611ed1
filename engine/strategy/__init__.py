"""Trading strategy code the user owns: entry signals. Everything else about a bot lives in YAML."""
