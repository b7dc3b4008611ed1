"""Stage one of validation: JSON Schema (draft 2020-12), every error collected, each placed in the file.

jsonschema's `best_match` would report one error; a user fixing a config wants all of them at once, so this
walks `iter_errors` and turns each into a `Problem` at the offending key or value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from engine.config.errors import ConfigError, PathPart, Problem, format_path
from engine.config.yaml_source import YamlDocument, load_yaml
from engine.core.names import nearest
from engine.paths import SCHEMAS_DIR, shown


def _strict_integer(_checker: Any, instance: Any) -> bool:
    # jsonschema accepts 3.0 as an integer; a count written as 3.0 is a typo worth reporting.
    return isinstance(instance, int) and not isinstance(instance, bool)


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from schemas/ by file name, e.g. `bots.schema.json`."""
    return json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))


_END = "\\Z"  # Python's end of the text, which a schema's `$` means (`ecma_anchored`)


def ecma_anchored(pattern: str) -> str:
    """`pattern` with each `$` that ends it (outside a character class, not escaped) written `\\Z`.

    A JSON Schema pattern is an ECMA-262 regex, where `$` is the end of the text. jsonschema runs it with Python's
    `re`, where `$` also matches before a line break that ends the text: `ticker: "AAPL\\n"` matched
    `^[A-Z][A-Z.]{0,9}$`, validated, and `run` then asked the broker for the symbol 'AAPL' and a newline; a state,
    a guard or a bot id could end in one as well. `\\Z` is Python's end of the text, as the schema means it."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            for literal in ("^", "]"):  # `[^]...]`: a ']' first in a class is one of its characters
                if pattern[index : index + 1] == literal:
                    out.append(literal)
                    index += 1
            continue
        elif char == "$":
            out.append(_END)
            index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _anchored(node: Any, *, keys: bool = False) -> Any:
    """A copy of a schema with every `pattern` and `patternProperties` key through `ecma_anchored`."""
    if isinstance(node, list):
        return [_anchored(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if keys:
            out[ecma_anchored(key)] = _anchored(value)
        elif key == "pattern" and isinstance(value, str):
            out[key] = ecma_anchored(value)
        else:
            out[key] = _anchored(value, keys=key == "patternProperties" and isinstance(value, dict))
    return out


@cache
def _checked_schema(name: str) -> dict[str, Any]:
    """The schema as validation runs it (`_anchored`); `load_schema` is the file as written."""
    return cast("dict[str, Any]", _anchored(load_schema(name)))


@cache
def _registry() -> Registry:
    """Every schema by its $id, so that one schema may refer to another (machines use the rules' conditions)."""
    resources = []
    for path in sorted(SCHEMAS_DIR.glob("*.schema.json")):
        schema = _checked_schema(path.name)
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def _validator(name: str) -> Draft202012Validator:
    cls = extend(Draft202012Validator, type_checker=_TYPE_CHECKER)
    return cls(_checked_schema(name), registry=_registry())


def show_value(value: Any) -> str:
    """A value as the user wrote it in YAML: strings quoted, booleans and null in YAML spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# JSON Schema's type names as a YAML author reads them (jsonschema's own message spells the value in Python).
_TYPE_WORDS = {
    "number": "a number",
    "integer": "a whole number",
    "string": "text",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "null",
}


_NAME_RULES = {ecma_anchored("^[a-z][a-z0-9_]*$"): "a name is lower-case letters, digits and '_', starting with a letter"}


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _unknown_keys(error: ValidationError) -> list[str]:
    schema = _schema_of(error)
    allowed = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    keys = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in keys if k not in allowed and not any(p.search(k) for p in patterns)]


def _alternatives(error: ValidationError, doc: YamlDocument) -> list[Problem] | None:
    """A oneOf/anyOf no branch of which matched, said at its innermost mistake, or None for the caller's message.

    It was said at its top with the alternatives' own message: a mistake inside a `when:` (`nott:` three levels
    down, a guard name in the wrong case) was reported at the `when:` line as "is not a guard name or ...", naming
    neither the item nor the key. A branch error below the value (an item of `all:`) is followed down, to the
    deepest; at the value itself, a key every branch that lists its keys refuses is an unknown key (with the
    nearest of the keys they allow); a value no branch takes for its type says the types wanted."""
    context = list(error.context or ())
    if not context:
        return None
    depth = max(len(e.relative_path) for e in context)
    if depth > 0:
        return _problems_for(next(e for e in context if len(e.relative_path) == depth), doc)
    closed = [e for e in context if e.validator == "additionalProperties" and isinstance(e.instance, dict)]
    if closed and isinstance(error.instance, dict):
        unknown = set.intersection(*(set(_unknown_keys(e)) for e in closed))
        allowed = sorted({key for e in closed for key in _schema_of(e).get("properties", {})})
        path = list(error.absolute_path)
        if unknown:
            return [
                doc.problem([*path, key], f"unknown key '{key}'{_key_hint(key, allowed)}", of_key=True)
                for key in error.instance
                if key in unknown
            ]
    if _schema_of(error).get("x-message"):
        return None
    if all(e.validator == "type" for e in context):
        wanted = [w for e in context for w in (e.validator_value if isinstance(e.validator_value, list) else [e.validator_value])]
        kinds = " or ".join(dict.fromkeys(_TYPE_WORDS.get(str(w), str(w)) for w in wanted))
        return [
            doc.problem(list(error.absolute_path), f"{show_value(error.instance)} is not {kinds}", of_key=error.instance is None)
        ]
    typed = [e for e in context if e.validator != "type"]  # the branches whose type the value has
    if len({e.relative_schema_path[0] for e in typed}) == 1:
        return [p for e in typed for p in _problems_for(e, doc)]
    return None


def _key_hint(key: str, allowed: list[str]) -> str:
    guess = nearest(key, allowed)
    return f" (did you mean '{guess}'?)" if guess else f" (allowed: {', '.join(allowed)})"


def _problems_for(error: ValidationError, doc: YamlDocument) -> list[Problem]:
    path = list(error.absolute_path)
    if error.validator in ("oneOf", "anyOf"):
        found = _alternatives(error, doc)
        if found is not None:
            return found
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(_schema_of(error).get("properties", {}))
        patterns = list(_schema_of(error).get("patternProperties", {}))
        problems = []
        for key in _unknown_keys(error):
            guess = nearest(key, allowed)
            if guess:
                hint = f" (did you mean '{guess}'?)"
            elif allowed:
                hint = f" (allowed: {', '.join(allowed)})"
            else:  # names of the user's own choosing (rules): what a name may be
                hint = " (" + " or ".join(_NAME_RULES.get(p, f"a name matching {p.replace(_END, '$')}") for p in patterns) + ")"
            problems.append(doc.problem([*path, key], f"unknown key '{key}'{hint}", of_key=True))
        return problems
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else error.message
        return [doc.problem(path, f"missing required key '{name}'", of_key=True)]
    custom = _schema_of(error).get("x-message")
    if custom and error.validator in ("pattern", "const", "format", "oneOf"):
        return [doc.problem(path, f"{show_value(error.instance)} {custom}")]
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        kinds = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted)
        # a key with nothing after it has no place of its own: the key is where the user looks
        return [doc.problem(path, f"{show_value(error.instance)} is not {kinds}", of_key=error.instance is None)]
    if error.validator == "enum" and isinstance(error.validator_value, list):
        options = ", ".join(show_value(v) for v in error.validator_value)
        return [doc.problem(path, f"{show_value(error.instance)} is not one of {options}")]
    return [doc.problem(path, error.message)]


def schema_errors(doc: YamlDocument, schema_name: str) -> list[ValidationError]:
    """Every schema violation in `doc` as jsonschema says it: the schema check's one pass over the file (the
    better part of validating a large bots.yaml), for `schema_problems` and `untrusted_paths` both."""
    return list(_validator(schema_name).iter_errors(doc.data))


def schema_problems(doc: YamlDocument, schema_name: str, errors: list[ValidationError] | None = None) -> list[Problem]:
    """Every schema violation in `doc`, each as a Problem at its key or value. `errors`: `schema_errors`."""
    problems: list[Problem] = []
    for error in schema_errors(doc, schema_name) if errors is None else errors:
        problems.extend(_problems_for(error, doc))
    return sorted(set(problems))


def _hidden(path: Path) -> bool:
    """A name starting with '.' is no engine file, as a shell's `*.yaml` says: it is an editor's (Emacs keeps
    `.#guards.yaml`, a link to nothing, while guards.yaml is being edited) or macOS's (`._guards.yaml`), and
    reading it would stop every command for as long as the editor holds it."""
    return path.name.startswith(".")


def yaml_files(folder: Path) -> tuple[list[Path], list[Problem]]:
    """The engine files of `folder` (`*.yaml`), sorted; a file named like one but with another spelling of the
    extension (`guards.yml`, `GUARDS.YAML`) is a problem, never passed over: its rules or its machine would be
    missing without a word (a preflight file renamed `.yml` would switch every preflight check off). Returns the
    files and one problem per such file; the callers count those files as unread."""
    try:
        listed = [p for p in folder.iterdir() if not _hidden(p)]
    except OSError:  # the folder cannot be listed (missing, a name too long, no permission): the caller says so
        return [], []
    paths = sorted(p for p in listed if p.suffix == ".yaml")
    strays = sorted(p for p in listed if p.suffix.lower() in (".yaml", ".yml") and p.suffix != ".yaml")
    message = (
        "the engine reads only files named *.yaml, so this one would be left out: rename it to {name}, or move it out "
        "of this folder"
    )
    return paths, [Problem(shown(path), 0, 0, "", message.format(name=f"{path.stem}.yaml")) for path in strays]


def load_checked(paths: Iterable[Path], schema_name: str, problems: list[Problem]) -> list[YamlDocument]:
    """Parse and schema-check files; the ones without problems are returned, every problem is collected.

    A file that cannot be read or parsed is reported and skipped, and the next file is still read: one broken
    file must not hide the problems of the others.
    """
    documents = []
    for path in paths:
        try:
            doc = load_yaml(path, shown(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        found = document_problems(doc, schema_name)
        problems.extend(found)
        if not found:
            documents.append(doc)
    return documents


def document_problems(doc: YamlDocument, schema_name: str, errors: list[ValidationError] | None = None) -> list[Problem]:
    """What was refused while reading `doc`, then its schema violations, each mistake once. `errors`:
    `schema_errors`."""
    # A value refused while reading (a date, a NaN) is reported once, not again by the schema: it was read as
    # null, and the schema's "null is not text" would point at its key, a second problem for one mistake.
    # An empty file is said once as such: not also as "null is not a mapping" at its first line.
    placed = {p.path for p in doc.problems if p.path or doc.data is None}
    return [*doc.problems, *(p for p in schema_problems(doc, schema_name, errors) if p.path not in placed)]


def untrusted_paths(doc: YamlDocument, errors: list[ValidationError]) -> set[tuple[PathPart, ...]]:
    """The key paths of `doc` whose values its problems make unknown, for the named checks to stay off them
    (engine/config/partial.py): the value the schema refused, a required key's place, the key an unknown one
    was probably meant to be (its nearest allowed key, else the whole mapping: any of its keys may be the one
    misspelt), a value refused while reading. `errors`: `schema_errors`. `()` is the whole file."""
    said = {p.path for p in doc.problems}
    if "" in said:
        return {()}
    paths = {path for path in (*doc.key_positions, *doc.value_positions) if format_path(path) in said}
    for error in errors:
        where = tuple(error.absolute_path)
        if error.validator == "required":
            paths.update((*where, name) for name in re.findall(r"'([^']+)' is a required property", error.message))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(_schema_of(error).get("properties", {}))
            for key in _unknown_keys(error):
                guess = nearest(key, allowed)
                paths.add((*where, guess) if guess else where)
        else:
            paths.add(where)
    return paths
