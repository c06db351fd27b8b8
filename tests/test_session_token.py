import base64
import contextlib
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken._errors import InvalidSessionToken, ShopTokenError
from shoptoken._oauth._session_token import (
    SESSION_TOKEN_LEEWAY,
    SessionTokenClaims,
    decode_session_token,
)

from ._logs import captured_events

CLIENT_ID = "app-client-id"
SECRET = "session-secret-0123456789abcdef0123456789"
OLD_SECRET = "old-session-secret-fedcba9876543210fedcba"
NOW = 1_800_000_000
DEST = "https://my-store.myshopify.com"

CLAIMS: dict[str, Any] = {
    "iss": f"{DEST}/admin",
    "dest": DEST,
    "aud": CLIENT_ID,
    "sub": "42",
    "exp": NOW + 60,
    "nbf": NOW - 5,
    "iat": NOW - 5,
    "jti": "6b1c4a2e-0000-4000-8000-000000000001",
    "sid": "session-id-abc",
}


DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any], payload: dict[str, Any], secret: str = SECRET, digest: str = "HS256"
) -> str:
    """A JWT with an arbitrary header and payload, HMAC-signed with ``secret`` and ``digest``.

    Hand-made rather than jwt.encode: PyJWT warns about the short keys of some
    tests and would not sign an "RS256" header with an HMAC.
    """
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), DIGESTS[digest]).digest()
    return f"{signing_input}.{b64(signature)}"


def make(secret: str = SECRET, algorithm: str = "HS256", **overrides: Any) -> str:
    """A session JWT with CLAIMS plus overrides (an override of None drops the claim)."""
    payload = {k: v for k, v in {**CLAIMS, **overrides}.items() if v is not None}
    return forge({"alg": algorithm, "typ": "JWT"}, payload, secret, algorithm)


def decode(
    token: Any, *, now: float = NOW, secrets: tuple[str, ...] = (SECRET,)
) -> SessionTokenClaims:
    """Verify ``token`` for CLIENT_ID at ``now``."""
    return decode_session_token(token, client_id=CLIENT_ID, secrets=secrets, now=now)


# --- accepted -----------------------------------------------------------------------------------


def test_valid_token_gives_claims() -> None:
    """A well-formed token signed with the secret yields every claim, the shop normalized."""
    assert decode(make()) == SessionTokenClaims(
        iss=f"{DEST}/admin",
        dest=DEST,
        shop="my-store.myshopify.com",
        aud=CLIENT_ID,
        sub="42",
        user_id=42,
        exp=NOW + 60,
        nbf=NOW - 5,
        iat=NOW - 5,
        jti=CLAIMS["jti"],
        sid="session-id-abc",
    )


def test_optional_claims_may_be_absent() -> None:
    """sub, iat, jti and sid are optional: absent, they are None."""
    claims = decode(make(sub=None, iat=None, jti=None, sid=None))
    assert (claims.sub, claims.user_id, claims.iat, claims.jti, claims.sid) == (None,) * 5


@pytest.mark.parametrize("sub", ["gid://shopify/User/42", "0", "abc", "9" * 30])
def test_non_numeric_sub_has_no_user_id(sub: str) -> None:
    """A sub that is not a positive decimal id is kept but gives no user_id."""
    claims = decode(make(sub=sub))
    assert (claims.sub, claims.user_id) == (sub, None)


def test_old_secret_accepted_during_rotation() -> None:
    """A token signed with the old secret verifies when it is configured, and is logged."""
    with captured_events() as logs:
        claims = decode(make(OLD_SECRET), secrets=(SECRET, OLD_SECRET))
    assert claims.shop == "my-store.myshopify.com"
    assert [e["event"] for e in logs] == ["shoptoken.oauth.old_secret_used"]


@pytest.mark.parametrize(
    "now",
    [
        NOW + 60 + SESSION_TOKEN_LEEWAY - 1,  # expired 9 s ago
        NOW - 5 - SESSION_TOKEN_LEEWAY,  # nbf 10 s ahead
    ],
    ids=["exp-within-leeway", "nbf-within-leeway"],
)
def test_within_leeway_accepted(now: float) -> None:
    """Both exp and nbf are enforced with a 10 s leeway."""
    assert decode(make(), now=now).aud == CLIENT_ID


def test_time_comes_from_the_given_clock_not_time_time() -> None:
    """A token from 1970 verifies at a 1970 'now': PyJWT's own time checks are off."""
    token = make(exp=1000, nbf=900, iat=900)
    assert decode(token, now=950).exp == 1000
    with pytest.raises(InvalidSessionToken, match="expired"):
        decode(token, now=NOW)


# --- rejected -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (make(algorithm="HS512"), "InvalidAlgorithmError"),
        (make(algorithm="HS384"), "InvalidAlgorithmError"),
        (jwt.encode(CLAIMS, "", algorithm="none"), "InvalidAlgorithmError"),
        (forge({"alg": "none", "typ": "JWT"}, CLAIMS), "InvalidAlgorithmError"),
        (forge({"alg": "RS256", "typ": "JWT"}, CLAIMS), "InvalidAlgorithmError"),
        (forge({"alg": "ES256", "typ": "JWT"}, CLAIMS), "InvalidAlgorithmError"),
        (forge({"typ": "JWT"}, CLAIMS), "InvalidAlgorithmError"),
        (
            forge({"alg": "none"}, CLAIMS).rsplit(".", 1)[0] + ".",
            "InvalidAlgorithmError",
        ),
    ],
    ids=["HS512", "HS384", "none", "none-signed", "RS256", "ES256", "no-alg", "none-unsigned"],
)
def test_wrong_algorithm_rejected(token: str, words: str) -> None:
    """Only HS256 is accepted: none, HS384/512 and asymmetric algorithms are refused."""
    with pytest.raises(InvalidSessionToken, match=words):
        decode(token)


def test_hs256_forged_header_with_correct_key_accepted() -> None:
    """The hand-made JWT helper is right: an HS256 header with the secret verifies."""
    assert decode(forge({"alg": "HS256", "typ": "JWT"}, CLAIMS)).shop == "my-store.myshopify.com"


@pytest.mark.parametrize(
    ("token", "secrets"),
    [
        (make("another-secret-0123456789abcdef0123456789"), (SECRET,)),
        (make(OLD_SECRET), (SECRET,)),
        (make("third-secret-0123456789abcdef0123456789ab"), (SECRET, OLD_SECRET)),
        (make()[:-2] + ("AA" if make()[-2:] != "AA" else "BA"), (SECRET,)),
    ],
    ids=["other-secret", "old-secret-not-configured", "neither-secret", "altered-signature"],
)
def test_wrong_signature_rejected(token: str, secrets: tuple[str, ...]) -> None:
    """A signature that verifies under neither configured secret is rejected."""
    with pytest.raises(InvalidSessionToken, match="signature does not verify"):
        decode(token, secrets=secrets)


def test_altered_payload_rejected() -> None:
    """Swapping in another payload under the original signature fails verification."""
    header, _, signature = make().split(".")
    payload = b64(json.dumps({**CLAIMS, "dest": "https://other.myshopify.com"}).encode())
    with pytest.raises(InvalidSessionToken, match="signature does not verify"):
        decode(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"aud": "another-app"}, "InvalidAudienceError"),
        ({"aud": [CLIENT_ID]}, "InvalidAudienceError"),
        ({"aud": None}, 'MissingRequiredClaimError: Token is missing the "aud" claim'),
        ({"exp": None}, "MissingRequiredClaimError"),
        ({"nbf": None}, "MissingRequiredClaimError"),
        ({"iss": None}, "MissingRequiredClaimError"),
        ({"dest": None}, "MissingRequiredClaimError"),
        ({"exp": "tomorrow"}, "exp is not a number"),
        ({"nbf": True}, "nbf is not a number"),
        ({"iat": "x"}, "iat is not a number"),
        ({"dest": 5, "iss": "5/admin"}, "dest is not a string"),
        ({"sub": 42}, "InvalidSubjectError"),
        ({"jti": ["x"]}, "InvalidJTIError"),
        ({"sid": 7}, "sid is not a string"),
    ],
)
def test_bad_claims_rejected(overrides: dict[str, Any], words: str) -> None:
    """Wrong audience, missing required claims and mistyped claims are rejected."""
    with pytest.raises(InvalidSessionToken, match=words):
        decode(make(**overrides))


@pytest.mark.parametrize(
    ("now", "words"),
    [
        (NOW + 60 + SESSION_TOKEN_LEEWAY, r"expired 10 s ago \(leeway 10 s\)"),
        (NOW + 3600, "expired"),
        (NOW - 5 - SESSION_TOKEN_LEEWAY - 1, r"not valid for another 11 s \(leeway 10 s\)"),
        (NOW - 3600, "not valid for another"),
    ],
    ids=["expired-at-leeway", "expired-long-ago", "nbf-beyond-leeway", "nbf-far-ahead"],
)
def test_outside_leeway_rejected(now: float, words: str) -> None:
    """A token expired by 10 s or more, or not valid for more than 10 s, is rejected."""
    with pytest.raises(InvalidSessionToken, match=words):
        decode(make(), now=now)


@pytest.mark.parametrize(
    "dest",
    [
        "https://evil.com",
        "https://my-store.myshopify.com.evil.com",
        "http://my-store.myshopify.com",
        "my-store.myshopify.com",
        "https://my-store",
        "https://my-store.myshopify.com/",
        "https://my-store.myshopify.com:443",
        "https://user@my-store.myshopify.com",
        "https://m\u0443-store.myshopify.com",
        "https://-store.myshopify.com",
        "",
    ],
)
def test_bad_dest_rejected(dest: str) -> None:
    """The dest claim must be exactly https:// plus a valid myshopify.com domain."""
    with pytest.raises(InvalidSessionToken, match=r"dest is not https://\{shop\}"):
        decode(make(dest=dest, iss=f"{dest}/admin"))


@pytest.mark.parametrize(
    "iss",
    [
        "https://other-store.myshopify.com/admin",
        DEST,
        f"{DEST}/admin/",
        "https://evil.com/admin",
        "shopify",
    ],
)
def test_iss_not_matching_dest_rejected(iss: str) -> None:
    """The iss claim must be exactly dest + '/admin'."""
    with pytest.raises(InvalidSessionToken, match="iss does not match dest"):
        decode(make(iss=iss))


def test_upper_case_dest_is_normalized() -> None:
    """An upper-case dest (with a matching iss) gives the normalized shop."""
    dest = "https://My-Store.myshopify.com"
    assert decode(make(dest=dest, iss=f"{dest}/admin")).shop == "my-store.myshopify.com"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c",
        "...",
        "e30.e30.",
        b64(b"[]") + "." + b64(b"{}") + ".",
        b64(b'{"alg":"HS256"}') + "." + b64(b"[1,2]") + ".x",
        b64(b'{"alg":"HS256"}') + "." + b64(b"\xff\xfe") + ".x",
        b64(b"[" * 5000) + ".e30.x",
        "x" * 10_000,
        "\u00e9.\u00e9.\u00e9",
        "Bearer " + make(),
    ],
    ids=[
        "empty",
        "one-segment",
        "two-segments",
        "garbage",
        "dots",
        "empty-signature",
        "array-header",
        "array-payload",
        "bad-utf8",
        "deep-header",
        "too-long",
        "non-ascii",
        "bearer-prefix",
    ],
)
def test_malformed_tokens_rejected(token: str) -> None:
    """Malformed strings raise InvalidSessionToken, never a decoding error."""
    with pytest.raises(InvalidSessionToken):
        decode(token)


@pytest.mark.parametrize("token", [None, 42, b"bytes", ["a.b.c"]])
def test_non_str_rejected(token: Any) -> None:
    """A non-str token raises InvalidSessionToken."""
    with pytest.raises(InvalidSessionToken, match="not a non-empty str"):
        decode(token)


def test_short_secret_does_not_warn() -> None:
    """A short client secret (PyJWT's InsecureKeyLengthWarning) neither warns nor fails."""
    token = forge({"alg": "HS256", "typ": "JWT"}, CLAIMS, secret="short")
    assert decode(token, secrets=("short",)).aud == CLIENT_ID


def test_errors_are_shop_token_errors_and_never_echo_the_token() -> None:
    """Every rejection is a ShopTokenError whose message, repr and log omit the token."""
    tokens = [
        make(aud="x"),
        make(algorithm="HS512"),
        make("another-secret-0123456789abcdef0123456789"),
        make(dest="https://evil.com"),
        make(exp=NOW - 100),
        forge({"alg": "HS256", "crit": ["x" * 50]}, CLAIMS),
        make()[:-1],
    ]
    for token in tokens:
        with captured_events() as logs, pytest.raises(ShopTokenError) as info:
            decode(token)
        assert logs
        for surface in [str(info.value), repr(info.value), repr(vars(info.value)), repr(logs)]:
            assert token not in surface
            assert SECRET not in surface
            for part in token.split("."):
                assert len(part) < 8 or part not in surface
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__ or info.value.__context__ is None


# --- properties ---------------------------------------------------------------------------------


@given(st.text(max_size=300))
def test_arbitrary_strings_raise_only_invalid_session_token(token: str) -> None:
    """Any string either verifies or raises InvalidSessionToken."""
    with contextlib.suppress(InvalidSessionToken):
        decode(token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["iss", "dest", "aud", "sub", "exp", "nbf", "iat", "jti", "sid", "x"]),
        json_values,
    ),
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64"]), json_values),
)
def test_arbitrary_signed_payloads_raise_only_invalid_session_token(
    payload: dict[str, Any], header: dict[str, Any]
) -> None:
    """Signed tokens with arbitrary claims and headers verify or raise InvalidSessionToken."""
    for claims in (payload, {**CLAIMS, **payload}):
        try:
            decode(forge({**header, "alg": "HS256"}, claims))
            decode(forge(header, claims))
        except InvalidSessionToken:
            pass
