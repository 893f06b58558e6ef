"""No undeclared host contact: every private host or library symbol the package touches (an override of `_x`, a
`super()._x` call, a `._x` read or `getattr(obj, "_x")` on something not ours) and every override of a host class's
method is declared in `llava_lf.seams` (which is where the declarations and their checks live, so it is not scanned).

The scan reads the source (ast); what a class overrides is then resolved on the real classes, on this host.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass

import pytest
from conftest import REPO

pytestmark = pytest.mark.host

PACKAGE = REPO / "plugin" / "llava_lf"
DECLARED_ONLY_HERE = PACKAGE / "seams"
HOST = "llamafactory"  # a host class is not an extension API: overriding any of its methods is a contact


@dataclass(frozen=True)
class Touch:
    where: str  # module:line
    module: str
    kind: str  # "read", "super" or "method"
    name: str
    owner: str = ""  # the class whose body it is in (super, method)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if DECLARED_ONLY_HERE not in path.parents:
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            trees[module] = ast.parse(path.read_text(), str(path))
    return trees


def defined_by_us(trees: dict[str, ast.Module]) -> set[str]:
    """Every name the package itself defines: functions, classes, assigned names and attributes, parameters."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
    return names


class _Scan(ast.NodeVisitor):
    def __init__(self, module: str, ours: set[str]):
        self.module, self.ours, self.classes, self.found = module, ours, [], []

    def _add(self, node: ast.AST, kind: str, name: str) -> None:
        owner = self.classes[-1] if self.classes else ""
        self.found.append(Touch(f"{self.module}:{node.lineno}", self.module, kind, name, owner))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("__"):
                self._add(item, "method", item.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _private(node.attr) and isinstance(node.ctx, ast.Load):
            receiver = node.value
            if isinstance(receiver, ast.Call) and getattr(receiver.func, "id", None) == "super":
                self._add(node, "super", node.attr)
            elif node.attr not in self.ours:
                self._add(node, "read", node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (getattr(node.func, "id", None) in {"getattr", "hasattr", "setattr"} and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                and _private(node.args[1].value) and node.args[1].value not in self.ours):
            self._add(node, "read", node.args[1].value)
        self.generic_visit(node)


def touches() -> list[Touch]:
    trees = _sources()
    ours = defined_by_us(trees)
    found = []
    for module, tree in trees.items():
        scan = _Scan(module, ours)
        scan.visit(tree)
        found += scan.found
    return found


def _foreign_symbol(touch: Touch) -> str | None:
    """`module.Class.name` for the first class not ours in the MRO of `touch.owner`, when a class not ours has
    `name`: what an override or a `super()` call reaches. None when only our classes define it."""
    cls = getattr(importlib.import_module(touch.module), touch.owner)
    foreign = [base for base in cls.__mro__[1:] if not base.__module__.startswith("llava_lf")]
    if not any(touch.name in vars(base) for base in foreign if base is not object) and touch.kind != "super":
        return None
    first = foreign[0]
    if touch.kind == "method" and not _private(touch.name) and not first.__module__.startswith(HOST):
        return None  # a library's public extension point (TrainerCallback.on_train_begin, nn.Module.forward)
    return f"{first.__module__}.{first.__qualname__}.{touch.name}"


def contacts() -> dict[str, list[str]]:
    """Each host or library symbol the package touches -> where (reads of unknown receivers by attribute name)."""
    found: dict[str, list[str]] = {}
    for touch in touches():
        symbol = touch.name if touch.kind == "read" else _foreign_symbol(touch)
        if symbol is not None:
            found.setdefault(symbol, []).append(touch.where)
    return found


def undeclared(found: dict[str, list[str]]) -> dict[str, list[str]]:
    from llava_lf.seams import registry

    symbols = {seam.symbol for seam in registry.ALL}
    attributes = {symbol.rsplit(".", 1)[-1] for symbol in symbols}
    return {symbol: where for symbol, where in found.items()
            if symbol not in symbols and ("." in symbol or symbol not in attributes)}


def test_every_private_host_or_library_symbol_the_package_touches_is_declared():
    assert undeclared(contacts()) == {}


def test_the_scan_sees_the_contacts_it_guards():
    """The scan is not vacuous: the overrides, super() calls and private reads we know of are among what it finds."""
    found = contacts()
    template, plugin = "llamafactory.data.template.Template", "llamafactory.data.mm_plugin.LlavaPlugin"
    expected = {f"{template}._encode", f"{template}._convert_elements_to_ids", f"{template}._get_jinja_template",
                f"{template}.encode_multiturn", f"{template}.fix_special_tokens", f"{plugin}.process_messages",
                f"{plugin}.get_mm_inputs", "_validate_input", "_validate_messages", "_attn_implementation",
                "_tokenizer", "_actions"}
    assert expected <= set(found), sorted(found)
    assert "_remembered" not in found and "_image_seqlen" not in found  # our own helpers are not contacts


def test_an_undeclared_touch_is_named_with_where_it_is():
    found = {**contacts(), "_added_tokens_encoder": ["llava_lf.templates.fast_encode:12"]}
    assert undeclared(found) == {"_added_tokens_encoder": ["llava_lf.templates.fast_encode:12"]}
