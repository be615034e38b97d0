from __future__ import annotations

import base64
import os
import stat
import uuid

import pytest

from conveyor.storage.secrets import KEY_FILE, SecretBox, SecretKeyError, load_key


def test_seal_and_open_bind_the_value_to_its_project_and_name(tmp_path):
    box = SecretBox(load_key(tmp_path, None))
    project = uuid.uuid4()
    nonce, sealed = box.seal(project, "TOKEN", "value-1")
    assert b"value-1" not in sealed
    assert box.open(project, "TOKEN", nonce, sealed) == "value-1"
    with pytest.raises(SecretKeyError, match="does not open"):
        box.open(project, "OTHER", nonce, sealed)
    with pytest.raises(SecretKeyError):
        box.open(uuid.uuid4(), "TOKEN", nonce, sealed)
    again = box.seal(project, "TOKEN", "value-1")
    assert again[0] != nonce, "a fresh nonce per write"


def test_key_file_is_generated_once_with_mode_600(tmp_path):
    first = load_key(tmp_path, None)
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
    assert load_key(tmp_path, None) == first
    configured = base64.urlsafe_b64encode(b"k" * 32).decode()
    assert load_key(tmp_path / "other", configured) == b"k" * 32


@pytest.mark.parametrize(("key", "message"), [("!!", "base64"), ("YWJj", "32 bytes")])
def test_bad_keys(tmp_path, key, message):
    with pytest.raises(SecretKeyError, match=message):
        load_key(tmp_path, key)


def test_another_key_cannot_open(tmp_path):
    project = uuid.uuid4()
    nonce, sealed = SecretBox(load_key(tmp_path / "a", None)).seal(project, "X", "v")
    with pytest.raises(SecretKeyError):
        SecretBox(load_key(tmp_path / "b", None)).open(project, "X", nonce, sealed)
