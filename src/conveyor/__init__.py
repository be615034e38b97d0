"""Conveyor: self-hosted CI/CD for teams that ship microservices."""

from __future__ import annotations

__version__ = "0.1.0"
