"""The trading loop: facts, preflight, the ExitBot and PortfolioBot, bots stepping, orders, persistence."""
