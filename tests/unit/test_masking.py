from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.runner.masking import SecretMasker


def stream(masker: SecretMasker, chunks: list[bytes]) -> bytes:
    return b"".join(masker.feed(c) for c in chunks) + masker.flush()


def test_masks_whole_value():
    m = SecretMasker(["hunter22"])
    assert stream(m, [b"password=hunter22 ok\n"]) == b"password=*** ok\n"


def test_secret_split_across_writes_is_masked():
    m = SecretMasker(["s3cr3t-token"])
    assert stream(m, [b"tok: s3cr", b"3t-to", b"ken done\n"]) == b"tok: *** done\n"


def test_secret_split_one_byte_at_a_time():
    m = SecretMasker(["abcdef"])
    data = b"xxabcdefyy abcde abcdef"
    assert stream(m, [bytes([b]) for b in data]) == b"xx***yy abcde ***"


def test_longer_secret_containing_a_shorter_one_is_masked_whole():
    m = SecretMasker(["abc", "abcdef"])
    assert stream(m, [b"1 abcd", b"ef 2 abc 3"]) == b"1 *** 2 *** 3"


def test_multiline_secret_is_masked_line_by_line():
    m = SecretMasker(["-----BEGIN KEY-----\nAAAAsecretBBBB\n-----END KEY-----"])
    assert stream(m, [b"line AAAAsecretBBBB\n"]) == b"line ***\n"


def test_short_values_are_not_masked_and_no_secrets_is_a_pass_through():
    m = SecretMasker(["ab", ""])
    assert not m.active
    assert stream(m, [b"ab ab"]) == b"ab ab"


def test_text_is_released_as_soon_as_it_cannot_be_a_secret():
    m = SecretMasker(["secret"])
    assert m.feed(b"hello se") == b"hello "
    assert m.feed(b"x") == b"sex"


secrets = st.lists(st.text(alphabet="abcxyz-_01", min_size=3, max_size=12), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    secrets=secrets,
    filler=st.lists(st.text(alphabet="abcxyz \n", max_size=8), max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_no_secret_survives_any_chunking(secrets, filler, cuts):
    """However the output is cut into writes, no secret appears in what is released."""
    parts: list[str] = []
    for i, piece in enumerate(filler):
        parts.append(piece)
        parts.append(secrets[i % len(secrets)])
    data = "".join(parts).encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    masked = stream(SecretMasker(secrets), chunks)
    whole = SecretMasker(secrets).mask(data)
    assert masked == whole
    for secret in secrets:
        assert secret.encode() not in masked.replace(b"***", b"\0")
