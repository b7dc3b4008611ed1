"""The simulated exchange: deterministic prices, a synthetic option chain, an account with orders and fills."""
