"""Automated analysis: judging a rollout from its measurements. `sequential` holds the
anytime-valid count tests, `judge` the verdicts (pure functions; docs/analysis.md)."""
