"""Reading the twin's configuration files (bindings, procedures): YAML or JSON, errors located by entry and line."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import orjson
import yaml

from scene.finite import non_finite
from scene.json_schema import schema_text

T = TypeVar("T")
TOO_DEEP = "nested too deeply (a configuration file has a few levels)"


@dataclass
class ConfigFileError(Exception):
    """A configuration file problem, located: `entry` is e.g. "bindings[3].path" or "steps[2].title"."""

    file: str
    entry: str
    problem: str
    line: int | None = None  # 1-based line of the entry in a YAML file, when known

    def __str__(self) -> str:
        at = f" (line {self.line})" if self.line is not None else ""
        return f"{self.file}: {self.entry}: {self.problem}{at}"


# libyaml's parser (PyYAML's wheels carry it): a 15 000-binding file takes seconds to read instead of minutes.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UniqueKeyLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate mapping keys instead of silently keeping the last."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def entry_name(path: Any) -> str:
    """A JSON Schema error path (["layers", "ops", "rules", 1]) as an entry name ("layers.ops.rules[1]")."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def check_finite(data: Any, file: str, error: type[ConfigFileError]) -> None:
    """Refuse NaN and ±infinity (YAML `.nan`, `.inf`, `1.0e+999`) anywhere in parsed data, naming the entry."""
    found = non_finite(data)
    if found is not None:
        path, value = found
        raise error(file, entry_name(path), f"{value} is not a finite number")


def convert(
    data: Any, into: type[T], file: str, error: type[ConfigFileError], explain: Callable[[Any, str], None]
) -> T:
    """`data` as the Struct `into`. msgspec checks what the published JSON Schema says (the schema is generated
    from the same Structs) in microseconds per entry; only when it refuses, `explain(data, file)` runs the JSON
    Schema validator, ~100 times slower, to raise the problem located by entry. A 15 000-binding file is
    checked in a fraction of a second instead of a minute."""
    try:
        return msgspec.convert(data, into)
    except msgspec.ValidationError as exc:
        explain(data, file)
        raise error(file, "(top level)", str(exc)) from None


def load_config(path: Path, error: type[ConfigFileError], parse: Callable[[Any, str], T]) -> T:
    """Read `path` (YAML, or JSON by its .json suffix) and `parse(data, file)` it. Every problem is raised as
    `error`: an unreadable file, bad syntax (with its line and column), or what `parse` raises, to which the
    entry's line in a YAML file is added."""
    file = str(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise error(file, "(file)", exc.strerror or str(exc)) from None
    return parse_config(text, file, error, parse)


def parse_config(text: bytes, file: str, error: type[ConfigFileError], parse: Callable[[Any, str], T]) -> T:
    """`load_config` of a file's content `text` (read before, or kept: the historian's versions of a bindings
    file); `file` names it in errors, and its .json suffix picks JSON."""
    is_json = file.endswith(".json")
    try:
        data = orjson.loads(text) if is_json else yaml.load(text, Loader=UniqueKeyLoader)
    except orjson.JSONDecodeError as exc:
        raise error(file, f"line {exc.lineno}, column {exc.colno}", f"bad JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own bound, the same as ours below
            raise error(file, "(file)", TOO_DEEP) from None
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(file, where, f"bad YAML: {problem}") from None
    except RecursionError:  # PyYAML recurses per level; orjson stops at 1024 levels with a JSONDecodeError
        raise error(file, "(file)", TOO_DEEP) from None
    try:
        return parse(data, file)
    except error as exc:
        if not is_json:
            exc.line = _yaml_line(yaml.compose(text, Loader=_SAFE_LOADER), exc.entry)
        raise


_ENTRY_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _yaml_line(node: yaml.Node | None, entry: str) -> int | None:
    """The line of `entry` ("layers.ops.rules[1].min") in a composed YAML document: the deepest found."""
    line = None
    for key, index in _ENTRY_STEP.findall(entry):
        if isinstance(node, yaml.MappingNode) and key:
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def config_main(
    argv: list[str], prog: str, schema: Callable[[], dict[str, Any]], load: Callable[[Path], T], say: Callable[[T], str]
) -> int:
    """The command line of a configuration module: `--schema` prints its JSON Schema, `FILE` checks a file and
    prints `say(loaded)` (exit 1 and the located problem when it is not valid)."""
    if argv == ["--schema"]:
        sys.stdout.write(schema_text(schema()))
        return 0
    if len(argv) == 1 and not argv[0].startswith("-"):
        try:
            loaded = load(Path(argv[0]))
        except ConfigFileError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{argv[0]}: {say(loaded)}")
        return 0
    print(f"usage: python -m {prog} --schema | FILE", file=sys.stderr)
    return 2
