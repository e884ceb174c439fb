"""The CLI's argument parser: no abbreviated options, and parse errors as ONE line.

jsonargparse reports a bad option as a usage dump plus a nested explanation (which union member,
which class_path, which sub-key failed). ``FrameworkArgumentParser.error`` condenses that into one
``error: ...`` line that names the full key, what was expected (a type or the allowed values) and,
for a typo, the closest valid key or value; then it exits with code 2. Abbreviated options
(``--model.init_args.config.num_expert`` for ``num_experts``) are refused: argparse's
``allow_abbrev`` is off for this parser and every class parser jsonargparse derives from it.
``JSONARGPARSE_DEBUG=true`` brings back jsonargparse's full report.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from typing import Iterable, NoReturn, Optional

from lightning.pytorch.cli import LightningArgumentParser

PARSER_KEY = re.compile(r'^Parser key "(?P<key>[^"]+)":$')
CLASS_PATH = re.compile(r"^Problem with given class_path '(?P<cls>[^']+)':$")
UNRECOGNIZED = re.compile(r"^unrecognized arguments: (?P<args>.+)$")
NOT_ACCEPTED = re.compile(r"^Option '(?P<key>[^']+)' is not accepted$")
GROUP_REFUSES = re.compile(r"^Group '(?P<group>[^']+)' does not accept option '(?P<key>[^']+)'$")
EXPECTED_GOT = re.compile(r"^Expected an? (?P<type>.+?)\. Got value: (?P<value>.*)$")
EXPECTED = re.compile(r"^Expected an? (?P<type>.+)$")
GIVEN_VALUE = re.compile(r"^Given value: (?P<value>.*)$")
NO_ATTRIBUTE = re.compile(r"^module '(?P<module>[^']+)' has no attribute '(?P<name>[^']+)'$")
IMPORT_FAILED = re.compile(r"^No module named '(?P<module>[^']+)'")
REQUIRED = re.compile(r"^the following arguments are required: (?P<keys>.+)$")
NOISE = re.compile(r"^(Given value|Subtypes:|Does not validate against|Errors:$|Expected a <class 'NoneType'>)")


class FrameworkArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` without prefix abbreviations and with one-line errors."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        full_report = os.environ.get("JSONARGPARSE_DEBUG", "").lower() == "true"
        if not self.exit_on_error or full_report:  # a nested class parser (its caller reports), or debugging
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        print(f"error: {summarize_error(message, parser)}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def summarize_error(message: str, parser: Optional[LightningArgumentParser] = None) -> str:
    """One line for jsonargparse's multi-line ``message`` (the raw text, joined, if it is not understood)."""
    lines = [line.strip().lstrip("-").strip() for line in message.splitlines() if line.strip()]
    keys: list[str] = []
    class_path = None
    for index, line in enumerate(lines):
        if match := PARSER_KEY.match(line):
            keys.append(match["key"])
        elif match := CLASS_PATH.match(line):
            keys.append("init_args")
            class_path = match["cls"]
        elif match := UNRECOGNIZED.match(line):
            unknown = match["args"].split()[0].lstrip("-").split("=", 1)[0]
            return _unknown_key(_join(keys, unknown), parser, class_path, keys)
        elif match := NOT_ACCEPTED.match(line):
            return _unknown_key(_join(keys, match["key"]), parser, class_path, keys)
        elif match := GROUP_REFUSES.match(line):
            return _unknown_key(_join(keys, f"{match['group']}.{match['key']}"), parser, class_path, keys)
        elif match := EXPECTED_GOT.match(line):
            return _bad_value(_join(keys), [match["type"]], match["value"])
        elif match := REQUIRED.match(line):
            missing = [_join(keys, key.strip().lstrip("-")) for key in match["keys"].split(",")]
            return (f"missing required option{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(key) for key in missing)}: set it in the config or with --{missing[0]}")
        elif match := NO_ATTRIBUTE.match(line) or IMPORT_FAILED.match(line):
            return _bad_class_path(_join(keys[:-1]), class_path, match)
        elif line == "Errors:":
            expected = [m["type"] for m in map(EXPECTED.match, lines[index + 1:]) if m]
            given = next((m["value"] for m in map(GIVEN_VALUE.match, lines) if m), "?")
            if expected and not any(CLASS_PATH.match(rest) for rest in lines[index + 1:]):
                return _bad_value(_join(keys), expected, given)
    kept = [line for line in lines if not NOISE.match(line)]
    return " ".join(kept or lines) if lines else message


def _join(keys: list[str], *more: str) -> str:
    return ".".join([*keys, *more])


def _unknown_key(key: str, parser, class_path: Optional[str], keys: list[str]) -> str:
    candidates = _class_keys(class_path, _join(keys)) if class_path else _parser_keys(parser)
    closest = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f" (did you mean '{closest[0]}'?)" if closest else ""
    where = f" of {class_path}" if class_path else ""
    return f"unknown option '{key}'{where}{hint}; see --help for the accepted options"


def _parser_keys(parser) -> list[str]:
    if parser is None:
        return []
    keys = []
    for action in parser._actions:
        if action.dest not in ("help", "config") and not action.dest.startswith("=="):
            keys.append(action.dest)
    return keys


def _class_keys(class_path: str, prefix: str) -> list[str]:
    try:
        module, _, name = class_path.rpartition(".")
        target = getattr(importlib.import_module(module), name)
        class_parser = FrameworkArgumentParser(exit_on_error=False)
        class_parser.add_class_arguments(target, fail_untyped=False)
    except Exception:  # noqa: BLE001 (a hint only: the one-line error is printed either way)
        return []
    return [f"{prefix}.{key}" for key in _parser_keys(class_parser)]


def _bad_value(key: str, expected_types: Iterable[str], given: str) -> str:
    choices: list[str] = []
    kinds: list[str] = []
    for text in expected_types:
        literal = re.fullmatch(r"typing\.Literal\[(?P<values>.*)\]", text)
        if literal:
            choices += [value.strip() for value in literal["values"].split(",")]
        else:
            kinds.append(_type_name(text))
    kinds = [kind for kind in kinds if kind != "None"] + (["null"] if "None" in kinds else [])
    if choices:
        shown = list(dict.fromkeys(c.strip("'\"") for c in choices))
        allowed = ", ".join(shown + kinds)
        closest = difflib.get_close_matches(given, shown, n=1, cutoff=0.6)
        hint = f" (did you mean '{closest[0]}'?)" if closest else ""
        return f"{key}: '{given}' is not one of {allowed}{hint}"
    return f"{key}: expected {' or '.join(kinds)}, got '{given}'"


def _type_name(text: str) -> str:
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    text = text.replace("typing.", "")
    return "None" if text == "NoneType" else text


def _bad_class_path(key: str, class_path: Optional[str], match: re.Match) -> str:
    module = match["module"]
    hint = ""
    if "name" in match.groupdict():
        try:
            names = [n for n in dir(importlib.import_module(module)) if not n.startswith("_")]
        except ImportError:
            names = []
        closest = difflib.get_close_matches(match["name"], names, n=1, cutoff=0.6)
        hint = f" (did you mean '{module}.{closest[0]}'?)" if closest else ""
        return f"{key}: cannot import class '{class_path}': module '{module}' has no '{match['name']}'{hint}"
    return f"{key}: cannot import class '{class_path}': no module named '{module}'"
