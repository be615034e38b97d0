"""The real-process `server` fixture, shared by the integration tests."""

from tests.integration.test_coordinator import server

__all__ = ["server"]
