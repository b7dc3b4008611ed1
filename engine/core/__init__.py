"""Infrastructure every part of the engine shares: time, durable state, the event log."""
