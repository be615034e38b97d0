"""Secrets at rest: AES-256-GCM, with a fresh 96-bit nonce per write and the secret's
project and name as associated data, so a ciphertext moved to another row fails to open.

The key comes from CONVEYOR_SECRET_KEY (32 bytes, URL-safe base64) or from
`<data-dir>/secret-key`, generated on first use with mode 600. Every replica of a
coordinator must use the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.domain.clock import utcnow
from conveyor.ids import new_id
from conveyor.storage.database import insert_for
from conveyor.storage.tables import Secret

KEY_FILE = "secret-key"


class SecretKeyError(ValueError):
    """The configured key is not 32 bytes of URL-safe base64, or does not open a secret."""


def load_key(data_dir: Path, configured: str | None) -> bytes:
    """The AES key: from the setting, else from the key file (created if missing)."""
    if configured:
        return _decode(configured)
    path = data_dir / KEY_FILE
    if path.exists():
        return _decode(path.read_text().strip())
    key = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.urlsafe_b64encode(key).decode() + "\n")
    return key


def _decode(text: str) -> bytes:
    try:
        key = base64.b64decode(text, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretKeyError("the secret key is not URL-safe base64") from exc
    if len(key) != 32:
        raise SecretKeyError(f"the secret key must be 32 bytes, not {len(key)}")
    return key


class SecretBox:
    """Encrypts and decrypts project secrets."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def _context(project_id: uuid.UUID, name: str) -> bytes:
        return f"{project_id}/{name}".encode()

    def seal(self, project_id: uuid.UUID, name: str, value: str) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), self._context(project_id, name))
        return nonce, sealed

    def open(self, project_id: uuid.UUID, name: str, nonce: bytes, sealed: bytes) -> str:
        try:
            plain = self._aead.decrypt(nonce, sealed, self._context(project_id, name))
        except InvalidTag as exc:
            raise SecretKeyError(f"secret {name!r} does not open with this key") from exc
        return plain.decode()

    def seal_blob(self, project_id: uuid.UUID, name: str, value: str) -> bytes:
        """A value sealed into one column: the 12-byte nonce, then the ciphertext."""
        nonce, sealed = self.seal(project_id, name, value)
        return nonce + sealed

    def open_blob(self, project_id: uuid.UUID, name: str, blob: bytes) -> str:
        return self.open(project_id, name, blob[:12], blob[12:])

    async def put(
        self,
        session: AsyncSession,
        team_id: uuid.UUID,
        project_id: uuid.UUID,
        name: str,
        value: str,
    ) -> None:
        """Create or replace a secret."""
        nonce, sealed = self.seal(project_id, name, value)
        values = {
            "id": new_id(),
            "team_id": team_id,
            "project_id": project_id,
            "name": name,
            "nonce": nonce,
            "ciphertext": sealed,
            "updated_at": utcnow(),
        }
        changes = {"nonce": nonce, "ciphertext": sealed, "updated_at": values["updated_at"]}
        await session.execute(
            insert_for(session)(Secret)
            .values(**values)
            .on_conflict_do_update(index_elements=["project_id", "name"], set_=changes)
        )

    async def names(self, session: AsyncSession, project_id: uuid.UUID) -> list[str]:
        rows = await session.scalars(
            select(Secret.name).where(Secret.project_id == project_id).order_by(Secret.name)
        )
        return list(rows.all())

    async def values(self, session: AsyncSession, project_id: uuid.UUID) -> dict[str, str]:
        """Every secret of a project, decrypted: for that project's jobs only."""
        rows = await session.scalars(select(Secret).where(Secret.project_id == project_id))
        return self.open_all(project_id, rows)

    def open_all(self, project_id: uuid.UUID, rows: Iterable[Secret]) -> dict[str, str]:
        """The project's secret rows (read by the caller), decrypted, by name."""
        return {s.name: self.open(project_id, s.name, s.nonce, s.ciphertext) for s in rows}
