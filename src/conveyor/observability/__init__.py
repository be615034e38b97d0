"""Conveyor watching itself: its metrics for Prometheus (`metrics`)."""
