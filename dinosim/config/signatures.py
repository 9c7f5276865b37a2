"""Read constructor signatures from source files with `ast`, without importing the modules.

The config validator needs the keyword arguments of SB3's algorithm and policy constructors and of our
environment classes. Importing those would pull in torch or MuJoCo on every CLI call, so we parse their source
instead. A parameter's default is kept when it is a literal; its annotation is reduced to the set of TOML-expressible
types it admits (see :func:`annotation_types`).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


NO_DEFAULT: Any = _NoDefault()
"""Sentinel default of a required parameter or one whose default is not a literal."""


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a constructor."""

    name: str
    default: Any  # a literal value, or NO_DEFAULT
    types: frozenset[str]  # subset of {"int", "float", "bool", "str", "list", "dict", "none"}; empty = not settable
    description: str


_TYPE_WORDS = {
    "float": "float",
    "int": "int",
    "bool": "bool",
    "str": "str",
    "dict": "dict",
    "Dict": "dict",
    "list": "list",
    "List": "list",
    "tuple": "list",
    "Tuple": "list",
    "Sequence": "list",
    "None": "none",
    "Optional": "none",
    "Schedule": "float",  # a schedule is given in TOML as a number (plus our *_end / lr_schedule keys)
}


def annotation_types(annotation: str) -> frozenset[str]:
    """The TOML-expressible types an annotation admits, e.g. ``"float | Schedule | None"`` -> {float, none}.

    Only the top level of the annotation counts: ``dict[str, Any]`` admits a dict, ``tuple[int, str]`` a list.
    A ``type[...]`` or class annotation admits nothing settable from TOML.
    """
    depth = 0
    top = []
    for char in annotation:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0:
            top.append(char)
    words = re.findall(r"[A-Za-z_][A-Za-z_0-9.]*", "".join(top))
    found = {_TYPE_WORDS[w] for w in words if w in _TYPE_WORDS}
    if "Optional" in words or "Union" in words:
        found |= annotation_types(_inner(annotation))
        if "Optional" in words:
            found.add("none")
    return frozenset(found)


def _inner(annotation: str) -> str:
    start, end = annotation.find("["), annotation.rfind("]")
    return annotation[start + 1 : end].replace(",", "|") if 0 <= start < end else ""


def _literal(node: Optional[ast.expr]) -> Any:
    if node is None:
        return NO_DEFAULT
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return NO_DEFAULT
    return list(value) if isinstance(value, tuple) else value


def _types_of_default(value: Any) -> frozenset[str]:
    if value is NO_DEFAULT:
        return frozenset()
    if value is None:
        return frozenset({"none"})
    name = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(value))
    return frozenset({name}) if name else frozenset()


def _param_docs(docstring: Optional[str]) -> dict[str, str]:
    docs: dict[str, str] = {}
    for match in re.finditer(r":param (\w+):(.*?)(?=\n\s*:|\Z)", docstring or "", re.S):
        docs[match.group(1)] = " ".join(match.group(2).split())
    return docs


def _trailing_comment(lines: list[str], lineno: int) -> str:
    line = lines[lineno - 1]
    return line.split("#", 1)[1].strip() if "#" in line else ""


@lru_cache(maxsize=None)
def _parse(path: Path) -> tuple[ast.Module, tuple[str, ...]]:
    text = path.read_text(encoding="utf-8")
    return ast.parse(text, filename=str(path)), tuple(text.splitlines())


def _find_class(tree: ast.Module, name: str) -> Optional[ast.ClassDef]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def _resolve_base(path: Path, tree: ast.Module, base: str) -> Optional[tuple[Path, str]]:
    """Where class ``base`` used in ``path`` is defined, following ``from X import base`` within the same tree."""
    if _find_class(tree, base) is not None:
        return path, base
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == base:
                    if node.level:
                        folder = path.parent
                        for _ in range(node.level - 1):
                            folder = folder.parent
                        parts = (node.module or "").split(".") if node.module else []
                    else:
                        root = module_root(node.module.split(".")[0]) if node.module else None
                        if root is None:
                            return None
                        folder, parts = root, node.module.split(".")[1:]
                    target = folder.joinpath(*parts).with_suffix(".py") if parts else folder / "__init__.py"
                    if target.exists():
                        return target, alias.name
    return None


def module_root(package: str) -> Optional[Path]:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def read_init_params(path: Path, class_name: str) -> dict[str, Param]:
    """Keyword parameters of ``class_name.__init__`` in ``path``, following ``**kwargs`` into base classes.

    Parameters of the class itself win over those of its bases. ``self`` and ``*args``/``**kwargs`` are dropped.
    Raises ``FileNotFoundError``/``LookupError`` when the file or class is missing.
    """
    tree, lines = _parse(path)
    cls = _find_class(tree, class_name)
    if cls is None:
        raise LookupError(f"class {class_name} not found in {path}")
    docs = _param_docs(ast.get_docstring(cls))
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    params: dict[str, Param] = {}
    follow_bases = init is None or init.args.kwarg is not None
    if init is not None:
        docs.update(_param_docs(ast.get_docstring(init)))
        args = init.args
        positional = args.posonlyargs + args.args
        pos_defaults: list[Optional[ast.expr]] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, pos_defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
        for arg, default_node in pairs:
            if arg.arg == "self":
                continue
            default = _literal(default_node)
            annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            types = annotation_types(annotation) if annotation else _types_of_default(default)
            description = docs.get(arg.arg) or _trailing_comment(list(lines), arg.lineno)
            params[arg.arg] = Param(arg.arg, default, types, description)
    if follow_bases:
        for base_node in cls.bases:
            base_name = ast.unparse(base_node).split(".")[-1]
            found = _resolve_base(path, tree, base_name)
            if found is None:
                continue
            for name, param in read_init_params(*found).items():
                params.setdefault(name, param)
    return params
