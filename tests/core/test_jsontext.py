"""`jsontext`: JSON the engine reads, decoded so that what cannot be read raises ValueError and nothing else, and,
for another program's text (`loads_strict`), what two readers would read two ways is refused rather than read one
of the ways."""

from __future__ import annotations

import pytest

from engine.core import jsontext


def test_strict_reads_json_as_loads_does() -> None:
    """Plain JSON, nested and in bytes, reads the same as `loads` reads it."""
    text = '{"a": [1, 2.5, "x", null, true], "b": {"c": {}}, "d": []}'
    assert jsontext.loads_strict(text) == jsontext.loads(text) == jsontext.loads_strict(text.encode())


@pytest.mark.parametrize(
    ("text", "key"),
    [('{"a": 1, "a": 2}', "a"), ('[{"x": {"b": true, "b": false}}]', "b"), ('{"é": 1, "\\u00e9": 2}', "é")],
)
def test_a_key_given_twice_in_one_object_is_ambiguous(text: str, key: str) -> None:
    """Python keeps the last value, other readers the first: neither is the text's meaning. The key is kept as data
    (the caller quotes it as it quotes any of another program's text); its spellings are one key."""
    with pytest.raises(jsontext.Ambiguous) as caught:
        jsontext.loads_strict(text)
    assert caught.value.key == key


def test_the_same_key_in_two_objects_is_not_ambiguous() -> None:
    assert jsontext.loads_strict('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(literal: str) -> None:
    """`json.loads` reads them; RFC 8259 has no such numbers."""
    assert jsontext.loads(f'{{"x": {literal}}}') is not None
    with pytest.raises(jsontext.Ambiguous, match=f"{literal} is not a JSON number"):
        jsontext.loads_strict(f'{{"x": {literal}}}')
    assert jsontext.loads_strict(f'{{"x": {literal}}}', non_finite=True)["x"] != 0  # a reader that checks numbers
    with pytest.raises(jsontext.Ambiguous):
        jsontext.loads_strict(f'{{"x": {literal}, "x": 1}}', non_finite=True)


@pytest.mark.parametrize("data", [b'{"a": "\xff"}', "[" * 100_000, '{"a": 1', ""])
def test_what_is_not_json_is_a_value_error(data: str | bytes) -> None:
    """Bytes that are not UTF-8, nesting past the recursion limit, cut or empty text: ValueError, never another."""
    with pytest.raises(ValueError):
        jsontext.loads_strict(data)
