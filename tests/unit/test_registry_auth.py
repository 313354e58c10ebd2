"""The `WWW-Authenticate` parser: real registry headers, the RFC grammar, and garbage."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ParseError
from shifter.registry import auth
from shifter.registry.auth import Challenge, format_challenges, parse_challenges

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKEN68_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/"


def test_docker_registry_bearer_challenge() -> None:
    header = (
        'Bearer realm="http://127.0.0.1:5001/token",service="shifter-test-registry",'
        'scope="repository:foo/bar:pull,push",error="insufficient_scope"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.get("realm") == "http://127.0.0.1:5001/token"
    assert challenge.get("service") == "shifter-test-registry"
    assert challenge.get("scope") == "repository:foo/bar:pull,push"
    assert challenge.get("error") == "insufficient_scope"
    assert challenge.scopes == ("repository:foo/bar:pull,push",)


def test_basic_challenge() -> None:
    assert parse_challenges('Basic realm="test-basic-realm"') == (
        Challenge("basic", (("realm", "test-basic-realm"),)),
    )


def test_several_scopes_in_one_value() -> None:
    (challenge,) = parse_challenges(
        'Bearer realm="r",scope="repository:a/b:push,pull repository:c/d:pull"'
    )
    assert challenge.scopes == ("repository:a/b:push,pull", "repository:c/d:pull")


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    (challenge,) = parse_challenges('BEARER Realm="x", SERVICE=reg')
    assert challenge.scheme == "bearer"
    assert challenge.get("realm") == "x"
    assert challenge.get("Service") == "reg"


def test_several_challenges_with_whitespace_and_empty_elements() -> None:
    header = ' Newauth realm="apps", type=1 , title="Login to \\"apps\\"", ,Basic realm="simple"'
    assert parse_challenges(header) == (
        Challenge("newauth", (("realm", "apps"), ("type", "1"), ("title", 'Login to "apps"'))),
        Challenge("basic", (("realm", "simple"),)),
    )


def test_token68_and_bare_schemes() -> None:
    assert parse_challenges("Negotiate abc/+def==, NTLM, Bearer") == (
        Challenge("negotiate", token68="abc/+def=="),
        Challenge("ntlm"),
        Challenge("bearer"),
    )


def test_a_name_with_an_equals_sign_and_no_value_is_a_token68() -> None:
    assert parse_challenges("Bearer realm=") == (Challenge("bearer", token68="realm="),)


def test_escapes_and_commas_inside_quoted_strings() -> None:
    (challenge,) = parse_challenges(r'Bearer realm="a\\b\"c, d=e",service="s"')
    assert challenge.get("realm") == 'a\\b"c, d=e'
    assert challenge.get("service") == "s"


def test_spaces_around_the_equals_sign() -> None:
    (challenge,) = parse_challenges('Bearer realm = "x" ,service= y')
    assert challenge.params == (("realm", "x"), ("service", "y"))


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        ("", "no authentication challenge"),
        (" , ,", "no authentication challenge"),
        ('"Bearer"', "expected an authentication scheme"),
        ('Bearer realm="unterminated', "unterminated quoted string"),
        ('Bearer realm="x", realm="y"', "given twice"),
        ("Bearer a=b c=d", "expected ',' between parameters"),
        ("Bearer a=b, c=", "expected a value"),
        ('Bearer realm="bad\x01char"', "control character"),
        ('Bearer realm="bad escape\\\x00"', "bad escape"),
        ("Bearer realm=x, =y", "expected an authentication scheme"),
        # RFC 9110 wants a space between scheme and parameters: after `Bearer,` the
        # parameter has no scheme to belong to.
        ("Bearer, realm=x", "expected a space after the scheme"),
    ],
)
def test_garbage_raises_parse_error(header: str, complaint: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_challenges(header)
    assert complaint in str(caught.value)
    assert str(caught.value).startswith("WWW-Authenticate: ")
    assert caught.value.hint


tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
values = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters="\x7f", min_codepoint=0x20
    ),
    max_size=30,
)


@st.composite
def challenges(draw: st.DrawFn) -> Challenge:
    scheme = draw(tokens).lower()
    kind = draw(st.sampled_from(["params", "token68", "bare"]))
    if kind == "token68":
        body = draw(st.text(alphabet=TOKEN68_CHARS, min_size=1, max_size=20))
        return Challenge(scheme, token68=body + "=" * draw(st.integers(0, 2)))
    if kind == "bare":
        return Challenge(scheme)
    names = draw(st.lists(tokens.map(str.lower), min_size=1, max_size=4, unique=True))
    return Challenge(scheme, tuple((name, draw(values)) for name in names))


@given(st.lists(challenges(), min_size=1, max_size=4))
def test_format_then_parse_round_trips(parsed: list[Challenge]) -> None:
    assert parse_challenges(format_challenges(parsed)) == tuple(parsed)


@given(challenges(), st.sampled_from([str.upper, str.title, str.swapcase]))
def test_case_of_scheme_and_names_does_not_matter(
    challenge: Challenge, case: Callable[[str], str]
) -> None:
    shouted = Challenge(
        case(challenge.scheme),
        tuple((case(name), value) for name, value in challenge.params),
        challenge.token68,
    )
    assert parse_challenges(format_challenges([shouted])) == (challenge,)


@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        parsed = parse_challenges(text)
    except ParseError as error:
        assert str(error).startswith("WWW-Authenticate: ")
    else:
        assert parsed, "a successful parse finds at least one challenge"
        assert all(c.scheme == c.scheme.lower() for c in parsed)


def test_quoted_string_classes_are_rfc_9110s() -> None:
    # They are written as what they exclude (compiling the ranges up to U+10FFFF cost 20 ms
    # at every start); check them against the RFC's wording on every BMP code point and the
    # edges of the astral planes.
    quoted_pair = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]")  # HTAB / SP / VCHAR / obs-text
    qdtext = re.compile(r"[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]")
    points = [*range(0x10000), 0x10000, 0x1F600, 0xE0000, 0x10FFFF]
    for point in points:
        char = chr(point)
        assert bool(auth._QUOTED_PAIR_OK.fullmatch(char)) == bool(quoted_pair.fullmatch(char))
        assert bool(auth._QDTEXT.fullmatch(char)) == bool(qdtext.fullmatch(char))
