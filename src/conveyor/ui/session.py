"""The UI's login: a team (or admin) token kept in a cookie the browser cannot read or
change. The cookie is sealed with the coordinator's secret key (AES-GCM, as project
secrets are), so every replica opens it and nothing is stored per session; it carries
the token, a CSRF token for the session's forms, and when it expires.

CSRF: every form carries the session's token in a hidden field (htmx requests send it
as the `X-CSRF-Token` header) and every POST is refused without it: the synchroniser
token pattern (decision 0023).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from conveyor.storage.secrets import SecretBox, SecretKeyError

COOKIE = "conveyor_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LIFETIME_S = 12 * 3600
"""A login lasts a working day."""
_SCOPE = uuid.UUID(int=0)
_NAME = "ui-session"


@dataclass(frozen=True)
class Login:
    token: str
    csrf: str
    expires: float


def seal(box: SecretBox, token: str, now: float | None = None) -> tuple[str, Login]:
    """A new login for `token`, as the cookie's value."""
    login = Login(token, secrets.token_urlsafe(24), (now or time.time()) + LIFETIME_S)
    body = json.dumps({"t": login.token, "c": login.csrf, "e": login.expires})
    return base64.urlsafe_b64encode(box.seal_blob(_SCOPE, _NAME, body)).decode(), login


def open_cookie(box: SecretBox, value: str | None, now: float | None = None) -> Login | None:
    """The login a cookie holds, or None when it is missing, forged or expired."""
    if not value:
        return None
    try:
        body = json.loads(box.open_blob(_SCOPE, _NAME, base64.urlsafe_b64decode(value)))
        login = Login(str(body["t"]), str(body["c"]), float(body["e"]))
    except (SecretKeyError, ValueError, KeyError, TypeError, binascii.Error):
        return None
    return login if login.expires > (now or time.time()) else None


def csrf_ok(login: Login, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(login.csrf.encode(), sent.encode())
