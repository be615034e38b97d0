"""Secret masking for streamed output.

Output arrives in chunks of arbitrary size, so a secret can be split across two writes.
SecretMasker keeps back the shortest tail that could still be the start of a secret and
only releases text once it is certain that text holds no secret, the approach of a
carry buffer (as in Buildkite's and Woodpecker's line writers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
MIN_SECRET_LEN = 3
"""Shorter values are not masked: masking `a` or `1` would wreck every log line."""


class SecretMasker:
    """Replaces every occurrence of any secret with `***` in a byte stream."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[bytes] = set()
        for secret in secrets:
            for part in [secret, *secret.splitlines()]:
                encoded = part.strip().encode()
                if len(encoded) >= MIN_SECRET_LEN:
                    values.add(encoded)
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = sorted(values, key=len, reverse=True)
        self._pattern = (
            re.compile(b"|".join(re.escape(s) for s in self._secrets)) if self._secrets else None
        )
        self._longest = len(self._secrets[0]) if self._secrets else 0
        self._carry = b""

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def feed(self, chunk: bytes) -> bytes:
        """Take more output; return what is safe to show now."""
        if self._pattern is None:
            return chunk
        data = self._carry + chunk
        keep = self._holdback(data)
        ready, self._carry = data[: len(data) - keep], data[len(data) - keep :]
        return self._pattern.sub(MASK, ready)

    def flush(self) -> bytes:
        """The end of the stream: release what was held back."""
        data, self._carry = self._carry, b""
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def mask(self, data: bytes) -> bytes:
        """Mask a complete piece of text (not part of a stream)."""
        return self._pattern.sub(MASK, data) if self._pattern is not None else data

    def _holdback(self, data: bytes) -> int:
        """How many trailing bytes to keep: from the earliest place where the rest of the
        data could still grow into a secret, moved back to the start of any match that
        the cut would otherwise split."""
        assert self._pattern is not None
        cut = len(data)
        for start in range(max(0, len(data) - self._longest + 1), len(data)):
            tail = data[start:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self._secrets):
                cut = start
                break
        for match in self._pattern.finditer(data):
            if match.start() < cut < match.end():
                cut = match.start()
        return len(data) - cut
