"""The rules of the API's text values, written into its JSON Schema as regular expressions
(ECMA-262, as OpenAPI reads them), so that every value the schema admits is one the
server takes: durations within their bounds, freeze windows' cron lines, time zones,
idempotency keys. The server still checks each value itself; these make the published
contract say the same."""

from __future__ import annotations

import zoneinfo

from pydantic.config import JsonDict


def documented(pattern: str) -> JsonDict:
    """A field's `pattern` in the published schema only: the server checks the value with
    its own rule, whose refusal says what is wrong in words (a pattern's says only that it
    does not match)."""
    return {"pattern": pattern}


def int_range(lo: int, hi: int) -> str:
    """A regular expression (no anchors, no leading zeros) for the integers lo..hi."""
    if not 0 <= lo <= hi:
        raise ValueError(f"no integers in {lo}..{hi}")
    parts = []
    while lo <= hi:
        top = min(hi, 10 ** len(str(lo)) - 1)  # the same number of digits as lo
        parts.append(_same_length(str(lo), str(top)))
        lo = top + 1
    return "(?:" + "|".join(parts) + ")"


def _digits(a: str, b: str) -> str:
    return a if a == b else f"[{a}-{b}]"


def _same_length(a: str, b: str) -> str:
    """The numbers a..b, both of one length."""
    if len(a) == 1:
        return _digits(a, b)
    rest = len(a) - 1
    if a[0] == b[0]:
        return a[0] + "(?:" + _same_length(a[1:], b[1:]) + ")"
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        return _digits(a[0], b[0]) + "[0-9]" * rest
    parts = [a[0] + "(?:" + _same_length(a[1:], "9" * rest) + ")"]
    if int(a[0]) + 1 <= int(b[0]) - 1:
        parts.append(_digits(str(int(a[0]) + 1), str(int(b[0]) - 1)) + "[0-9]" * rest)
    parts.append(b[0] + "(?:" + _same_length("0" * rest, b[1:]) + ")")
    return "|".join(parts)


UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(min_s: int, max_s: int) -> str:
    """A whole number of one unit (`90s`, `45m`, `62h`, `3d`) from min_s to max_s seconds."""
    forms = []
    for unit, size in UNITS:
        lo, hi = -(-min_s // size), max_s // size
        if lo <= hi:
            forms.append(int_range(max(lo, 1), hi) + unit)
    return "^(?:" + "|".join(forms) + ")$"


def _cron_field(lo: int, hi: int) -> str:
    number = int_range(lo, hi)
    atom = rf"(?:\*|{number}(?:-{number})?)"
    item = rf"{atom}(?:/{int_range(1, hi)})?"
    return rf"{item}(?:,{item})*"


CRON = (
    "^"
    + " ".join(_cron_field(lo, hi) for lo, hi in ((0, 59), (0, 23), (1, 28), (1, 12), (0, 7)))
    + "$"
)
"""Five fields, minute hour day-of-month month weekday, in numbers. The schema admits
days 1-28 only (every month has them); the server also takes 29-31 and names."""

TIMEZONES = sorted(zoneinfo.available_timezones())
"""IANA time zone names this server knows."""

IDEMPOTENCY_KEY = r'^(?:[!-~]|[!#-~][!-~]|"[!#-~]|[!-~]{3,255})$'
"""1-255 printable ASCII characters without spaces (an sf-string's quotes are taken off,
so `""` alone is empty)."""

HTTP_URL = r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"
"""An http(s) URL with an ASCII host name (the server also takes IDNA and IP literals)."""

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
REPO_URL = (
    r"^(?:/[!-~]*"
    rf"|(?:https?|ssh|git)://(?:[!-.0-?A-~]+@)?{_HOST}(?::[0-9]{{1,5}})?(?:/[!-~]*)?"
    r"|file:///[!-~]*"
    rf"|(?:[A-Za-z0-9._-]+@)?{_HOST}:(?:[!-.0-~][!-~]*|/(?:[!-.0-~][!-~]*)?))$"
)
"""What git clones: an absolute path, a URL (http, https, ssh, git, file) or
`user@host:path` (vcs.check_repo_url is the server's check)."""


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_ADDRESS = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"
"""An IPv4 address in dotted quads, no leading zeros (where a host's instances listen)."""
