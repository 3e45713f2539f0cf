"""Local development and test infrastructure: a private Redis, the demo. Never imported by services."""
