"""Prove that every TensorRT name the project uses exists in the real TensorRT 10.x, 11.x and TensorRT-RTX bindings.

TensorRT installs only next to an NVIDIA driver, so most machines cannot import the code in
pipeline/backends/tensorrt.py against the real module. The compiled bindings, however, are small
wheels on PyPI (tensorrt-cu12-bindings / tensorrt-cu13-bindings / tensorrt-rtx-cu12-bindings,
~1.3 MB; TensorRT-RTX is the same pybind module under the name tensorrt_rtx). This script downloads
a few versions, imports each compiled module against stub libnvinfer / libnvonnxparser /
libnvinfer_plugin (a C file defining the entry points the module links, none called at import)
and records dir() of every class plus the return type pybind11 writes into each method's docstring.
Then it reads the project's source with `ast`:

- every `trt.A.B...` chain must exist (module attribute, class member, nested enum value);
- objects get a TensorRT type from `trt.Class(...)`, from `trt.Class` annotations and from the
  bindings' own return types (builder.create_network() -> INetworkDefinition, ...), through local
  variables, `self.x` attributes and annotated helper functions; every attribute used on a typed
  object must exist on its class;
- a pre-10 name (execute_async_v2, get_binding_index, ...) fails even where the type is unknown;
- code under `if tensorrt_major() < 11:` (any comparison with a constant) or `if is_rtx():` /
  `if not is_rtx():` (also as methods, `flavour.is_rtx()`; `and` and nested ifs compose) is
  checked only against the bindings that take that branch (RTX's major version is 1); the `else`
  of a bare test gets the complement.

    python tools/check_tensorrt_api.py [--report tools/tensorrt_api_check.txt] [FILES ...]

Exit status: 0 all names found, 1 a name is missing, 2 the bindings could not be fetched or loaded.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ("pipeline/backends/tensorrt.py", "build_engine.py")
DEFAULT_CACHE = REPO / ".cache" / "trt-wheels"
DEFAULT_REPORT = REPO / "tools" / "tensorrt_api_check.txt"
# Oldest and newest 10.x, first and newest 11.x; cu12 and cu13 builds share one bindings source.
DEFAULT_WHEELS = (
    "tensorrt-cu12-bindings==10.0.1",
    "tensorrt-cu12-bindings==10.16.1.11",
    "tensorrt-cu12-bindings==11.0.0.114",
    "tensorrt-cu12-bindings==11.4.0.106",
    "tensorrt-cu13-bindings==11.4.0.106",
    "tensorrt-rtx-cu12-bindings==1.7.1.116",
)
# Removed in TensorRT 10.0 (binding indices, implicit batch, enqueue v2): a use is an error whatever the
# receiver. Names some other class still has (IPluginV2.execute_async) are left to the typed check.
REMOVED_NAMES = frozenset(
    {
        "execute_async_v2",
        "set_binding_shape",
        "get_binding_shape",
        "get_binding_index",
        "get_binding_name",
        "get_binding_dtype",
        "get_binding_format",
        "get_binding_vectorized_dim",
        "binding_is_input",
        "num_bindings",
        "is_shape_binding",
        "is_execution_binding",
        "get_profile_shape",
        "get_profile_shape_input",
        "max_workspace_size",
        "build_cuda_engine",
    }
)
GUARD_FUNCTION = "tensorrt_major"
FLAVOUR_FUNCTION = "is_rtx"
RTX_GUARD = "rtx"  # guard symbol: ("rtx", 1) under `if is_rtx():`, ("rtx", 0) under `if not is_rtx():`
UNTYPED = "?"  # receiver of a removed name whose type the checker could not infer
# The entry points the bindings link from libnvinfer & co.; a new one is learnt from the import error.
STUB_SYMBOLS = (
    "createInferBuilder_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "getBuilderPluginRegistry",
    "getNvOnnxParserVersion",
    "getPluginRegistry",
    "initLibNvInferPlugins",
)
STUB_LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")
RTX_STUB_LIBRARIES = ("tensorrt_rtx", "tensorrt_onnxparser_rtx")

_COMPARISONS: dict[type, tuple[str, Callable[[int, int], bool]]] = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "==", RTX_GUARD: RTX_GUARD}
_OPERATORS = {symbol: function for symbol, function in _COMPARISONS.values()}

# Runs in a fresh interpreter per wheel (two versions cannot share a process): prints the API as JSON.
_DUMP_SCRIPT = r"""
import importlib, json, re, sys
sys.path.insert(0, sys.argv[1])
trt = importlib.import_module(sys.argv[2])
RETURNS = re.compile(r"^\s*(?:\d+\.\s+)?(\w+)\(.*\)\s*->\s*(?:tensorrt_rtx_bindings|tensorrt_bindings|tensorrt)\.tensorrt(?:_rtx)?\.(\w+)\s*$")
def members(cls):
    table = {}
    for name in dir(cls):
        doc = getattr(getattr(cls, name, None), "__doc__", None) or ""
        found = [m.group(2) for m in map(RETURNS.match, doc.splitlines()) if m and m.group(1) == name]
        table[name] = found[0] if found else None
    return table
classes = {}
for name in dir(trt):
    value = getattr(trt, name)
    if isinstance(value, type):
        classes[name] = members(value)
        for inner in dir(value):
            nested = getattr(value, inner, None)
            if isinstance(nested, type) and not inner.startswith("__"):
                classes[name + "." + inner] = members(nested)
print(json.dumps({"version": trt.__version__, "module": sorted(dir(trt)), "classes": classes}))
"""


class BindingsUnavailable(RuntimeError):
    """The wheels could not be downloaded, unpacked or imported here (no network, no C compiler)."""


@dataclass(frozen=True)
class Api:
    """What one bindings version exports: module names, and per class its members with return types."""

    label: str  # e.g. "cu12 10.0.1", "rtx 1.7.1.116"
    version: str
    module: frozenset[str]
    classes: dict[str, dict[str, str | None]]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def rtx(self) -> bool:
        return self.label.startswith("rtx")

    def has(self, name: str) -> bool:
        """`trt.A.B.C` (a module chain) or `Class.member` (a member of a typed object)."""
        if name.startswith(UNTYPED):
            return False
        if not name.startswith("trt."):
            owner, member = name.rsplit(".", 1)
            return member in self.classes.get(owner, {})
        parts = name.split(".")
        if parts[1] not in self.module:
            return False
        owner = parts[1]
        for part in parts[2:]:
            if owner not in self.classes or part not in self.classes[owner]:
                return False
            owner = f"{owner}.{part}"
        return True


@dataclass
class Usage:
    """One TensorRT name used by the source, with the version guards around its uses."""

    name: str
    guards: tuple[tuple[str, int], ...]
    locations: list[str] = field(default_factory=list)

    def applies_to(self, api: Api) -> bool:
        return all(
            api.rtx == bool(value) if symbol == RTX_GUARD else _OPERATORS[symbol](api.major, value) for symbol, value in self.guards
        )

    @property
    def condition(self) -> str:
        return " and ".join(
            ("TensorRT-RTX" if value else "not TensorRT-RTX") if symbol == RTX_GUARD else f"TensorRT {symbol} {value}"
            for symbol, value in self.guards
        )


class _Collector(ast.NodeVisitor):
    """Walks a module twice: the first pass learns the types of `self.x`, the second records usages."""

    def __init__(self, path: str, alias: str, classes: dict[str, dict[str, str | None]]) -> None:
        self.path, self.alias, self.classes = path, alias, classes
        self.function_returns: dict[str, str] = {}
        self.self_types: dict[str, str] = {}
        self.scopes: list[dict[str, str]] = [{}]
        self.guards: list[tuple[str, int]] = []
        self.usages: dict[tuple[str, tuple], Usage] = {}
        self.recording = False

    def run(self, tree: ast.Module) -> list[Usage]:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (returned := self.annotated(node.returns)):
                self.function_returns[node.name] = returned
        for recording in (False, True):
            self.recording, self.scopes = recording, [{}]
            self.visit(tree)
        return list(self.usages.values())

    def record(self, name: str, node: ast.AST) -> None:
        if self.recording:
            usage = self.usages.setdefault((name, tuple(self.guards)), Usage(name, tuple(self.guards)))
            usage.locations.append(f"{self.path}:{node.lineno}")

    def annotated(self, annotation: ast.expr | None) -> str | None:
        """`trt.X`, `"trt.X"` or `trt.X | None` -> X."""
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        if isinstance(annotation, ast.BinOp):
            return self.annotated(annotation.left) or self.annotated(annotation.right)
        chain = _chain(annotation)
        if chain and len(chain) == 2 and chain[0] == self.alias and chain[1] in self.classes:
            return chain[1]
        return None

    def type_of(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return next((scope[node.id] for scope in reversed(self.scopes) if node.id in scope), None)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return self.self_types.get(node.attr)
        if not isinstance(node, ast.Call):
            return None
        function = node.func
        chain = _chain(function)
        if chain and len(chain) == 2 and chain[0] == self.alias and chain[1] in self.classes:
            return chain[1]  # trt.Builder(...) -> a Builder
        if isinstance(function, ast.Attribute):
            receiver = self.type_of(function.value)
            if receiver is not None:
                return self.classes.get(receiver, {}).get(function.attr)
            return self.function_returns.get(function.attr) if _is_self(function.value) else None
        if isinstance(function, ast.Name):
            return self.function_returns.get(function.id)
        return None

    def bind(self, target: ast.expr, kind: str | None) -> None:
        if isinstance(target, ast.Name) and target.id != self.alias:
            if kind is None:
                self.scopes[-1].pop(target.id, None)
            else:
                self.scopes[-1][target.id] = kind
        elif isinstance(target, ast.Attribute) and _is_self(target.value) and kind is not None:
            self.self_types[target.attr] = kind

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        self.scopes.append({arg.arg: kind for arg in arguments if (kind := self.annotated(arg.annotation))})
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        kind = self.type_of(node.value)
        for target in node.targets:
            self.bind(target, kind)
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.bind(node.target, self.annotated(node.annotation) or (self.type_of(node.value) if node.value else None))

    def visit_If(self, node: ast.If) -> None:
        """`if V and x:` guards its body by V; only a bare `if V:` guards the `else` by not-V."""
        self.visit(node.test)
        terms = node.test.values if isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And) else [node.test]
        body_guards = [guard for term in terms if (guard := _version_guard(term))]
        bare = _version_guard(node.test)
        else_guards = [_negated(bare)] if bare else []
        for statements, guards in ((node.body, body_guards), (node.orelse, else_guards)):
            self.guards.extend(guards)
            for statement in statements:
                self.visit(statement)
            del self.guards[len(self.guards) - len(guards) :]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] in ("tensorrt", "tensorrt_rtx"):
            self.record(f"{UNTYPED}.from-import (write `import tensorrt as trt` so every use is visible)", node)

    def _is_tensorrt_chain(self, chain: list[str]) -> bool:
        """True unless a link before the last is not a class (`trt.__version__.split` is str API, not TensorRT's)."""
        owner = chain[1]
        for part in chain[2:]:
            if owner not in self.classes:
                return False
            owner = f"{owner}.{part}"
        return True

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and chain[0] == self.alias and self._is_tensorrt_chain(chain):
            self.record(".".join(["trt", *chain[1:]]), node)
            return  # the inner attributes are prefixes of this chain
        receiver = self.type_of(node.value)
        if receiver is not None:
            self.record(f"{receiver}.{node.attr}", node)
        elif node.attr in REMOVED_NAMES:
            self.record(f"{UNTYPED}.{node.attr}", node)
        self.visit(node.value)


def _chain(node: ast.expr | None) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None for anything that is not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _negated(guard: tuple[str, int]) -> tuple[str, int]:
    symbol, value = guard
    return (RTX_GUARD, 1 - value) if symbol == RTX_GUARD else (_NEGATED[symbol], value)


def _version_guard(test: ast.expr) -> tuple[str, int] | None:
    """`tensorrt_major() < 11` (or `11 > tensorrt_major()`) -> ("<", 11); `is_rtx()` -> ("rtx", 1), `not is_rtx()` -> ("rtx", 0)."""
    if _is_guard_call(test, FLAVOUR_FUNCTION):
        return RTX_GUARD, 1
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and (inner := _version_guard(test.operand)):
        return _negated(inner) if inner[0] == RTX_GUARD else None
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _COMPARISONS):
        return None
    symbol = _COMPARISONS[type(test.ops[0])][0]
    left, right = test.left, test.comparators[0]
    if _is_guard_call(right) and isinstance(left, ast.Constant):
        left, right = right, left
        symbol = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(symbol, symbol)
    if _is_guard_call(left) and isinstance(right, ast.Constant) and isinstance(right.value, int):
        return symbol, right.value
    return None


def _is_guard_call(node: ast.expr, function: str = GUARD_FUNCTION) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    return name == function


def _tensorrt_alias(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("tensorrt", "tensorrt_rtx"):
                    return alias.asname or "tensorrt"
    return "trt"


def collect_usages(source: str, path: str, apis: Iterable[Api]) -> list[Usage]:
    """Every TensorRT name `source` uses, typed with the union of the given versions' return types."""
    classes: dict[str, dict[str, str | None]] = {}
    for api in apis:
        for name, members in api.classes.items():
            merged = classes.setdefault(name, {})
            for member, returned in members.items():
                merged[member] = merged.get(member) or returned
    tree = ast.parse(source, filename=path)
    return _Collector(path, _tensorrt_alias(tree), classes).run(tree)


def missing(usage: Usage, apis: Iterable[Api]) -> list[str]:
    """Labels of the versions that take this usage's branch but do not export its name."""
    return [api.label for api in apis if usage.applies_to(api) and not api.has(usage.name)]


# --- fetching and loading the real bindings ------------------------------------------------------


def fetch_api(requirement: str, cache: Path) -> Api:
    """Download (once) a bindings wheel and dump its API (once); cached as JSON beside the wheel."""
    package, version = requirement.split("==")
    flavour = package.split("-")[1]  # cu12 / cu13 / rtx
    label = f"{flavour} {version}"
    dump = cache / f"api-{package}-{version}.json"
    if not dump.is_file():
        root = _unpacked_wheel(package, version, cache)
        dump.write_text(_dump_api(root, _Layout.of(package, version), cache))
    fields = json.loads(dump.read_text())
    return Api(label, fields["version"], frozenset(fields["module"]), fields["classes"])


def _unpacked_wheel(package: str, version: str, cache: Path) -> Path:
    root = cache / f"{package}-{version}"
    if (root / _Layout.of(package, version).module).is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    python = f"{sys.version_info.major}{sys.version_info.minor}"
    pattern = f"{package.replace('-', '_')}-{version}-cp{python}-*.whl"
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        platforms = [
            arg
            for platform in ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
            for arg in ("--platform", platform)
        ]
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            *platforms,
            f"{package}=={version}",
            "-d",
            str(cache),
        ]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        wheels = sorted(cache.glob(pattern))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel for this Python"])[-1]
            raise BindingsUnavailable(f"cannot download {package}=={version} from PyPI: {reason}")
    with zipfile.ZipFile(wheels[-1]) as archive:
        archive.extractall(root)
    return root


@dataclass(frozen=True)
class _Layout:
    """How one bindings wheel is laid out: its Python module, and the shared libraries (with soname version) it links."""

    module: str
    libraries: tuple[str, ...]
    soversion: int

    @classmethod
    def of(cls, package: str, version: str) -> _Layout:
        major = int(version.split(".")[0])
        if package.startswith("tensorrt-rtx"):
            return cls("tensorrt_rtx_bindings", RTX_STUB_LIBRARIES, major)
        return cls("tensorrt_bindings", STUB_LIBRARIES, major)


def _dump_api(root: Path, layout: _Layout, cache: Path) -> str:
    symbols = list(STUB_SYMBOLS)
    for _ in range(20):  # each round learns at most one new entry point from the loader's error
        stubs = _stub_libraries(layout, symbols, cache)
        search_path = os.pathsep.join(filter(None, [str(stubs), os.environ.get("LD_LIBRARY_PATH")]))
        command = [sys.executable, "-c", _DUMP_SCRIPT, str(root), layout.module]
        result = subprocess.run(
            command, check=False, capture_output=True, text=True, env={**os.environ, "LD_LIBRARY_PATH": search_path}
        )
        if result.returncode == 0:
            return result.stdout
        unknown = re.search(r"undefined symbol: (\w+)", result.stderr)
        if not unknown or unknown.group(1) in symbols:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BindingsUnavailable(f"cannot import the bindings in {root}: {last}")
        symbols.append(unknown.group(1))
    raise BindingsUnavailable(f"the bindings in {root} keep asking for more libnvinfer symbols")


def _stub_libraries(layout: _Layout, symbols: list[str], cache: Path) -> Path:
    """libnvinfer.so.N & co. defining `symbols` as functions returning 0; rebuilt when the list changes."""
    folder = cache / f"stubs-{layout.libraries[0]}-{layout.soversion}"
    source = "".join(f"void *{symbol}(void) {{ return 0; }}\n" for symbol in symbols)
    if (folder / "stub.c").is_file() and (folder / "stub.c").read_text() == source:
        return folder
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise BindingsUnavailable("no C compiler (cc/gcc) to build the stub libnvinfer the bindings link against")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stub.c").write_text(source)
    for library in layout.libraries:
        name = f"lib{library}.so.{layout.soversion}"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-o", str(folder / name), str(folder / "stub.c"), f"-Wl,-soname,{name}"],
            check=True,
            capture_output=True,
        )
    return folder


# --- the report ----------------------------------------------------------------------------------


def check(files: Iterable[Path], apis: list[Api]) -> tuple[str, bool]:
    """The report text and whether every name exists wherever its branch runs."""
    usages = [usage for path in files for usage in collect_usages(path.read_text(), _shown(path), apis)]
    width = max([len(usage.name) for usage in usages] + [4])
    lines = [
        "TensorRT Python API check (tools/check_tensorrt_api.py)",
        f"date: {datetime.date.today().isoformat()}",
        f"sources: {', '.join(_shown(path) for path in files)}",
        f"bindings: {', '.join(api.label for api in apis)} (PyPI wheels, compiled module imported against stub libnvinfer)",
        "",
        f"{'name':<{width}}  {'  '.join(api.label for api in apis)}  where",
    ]
    failures = 0
    for usage in sorted(usages, key=lambda usage: (usage.name, usage.guards)):
        cells = []
        for api in apis:
            present = api.has(usage.name)
            if usage.applies_to(api):
                status = "ok" if present else "MISSING"
            else:  # branch not taken on this version: say whether the name is there, for the record
                status = "(ok)" if present else "(absent)"
            cells.append(f"{status:<{len(api.label)}}")
            failures += status == "MISSING"
        where = ", ".join(usage.locations[:3]) + (f" (+{len(usage.locations) - 3})" if len(usage.locations) > 3 else "")
        condition = f"  [only {usage.condition}]" if usage.guards else ""
        lines.append(f"{usage.name:<{width}}  {'  '.join(cells)}  {where}{condition}")
    verdict = "PASS" if failures == 0 else f"FAIL ({failures} missing)"
    lines += ["", f"result: {verdict}: {len(usages)} names checked against {len(apis)} bindings versions"]
    return "\n".join(lines) + "\n", failures == 0


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=[REPO / name for name in DEFAULT_FILES])
    parser.add_argument(
        "--wheel", action="append", dest="wheels", help="package==version (repeatable; default: 10.x, 11.x and RTX set)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where wheels and API dumps are kept")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="where the report is written")
    options = parser.parse_args(argv)
    try:
        apis = [fetch_api(requirement, options.cache) for requirement in options.wheels or DEFAULT_WHEELS]
    except BindingsUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report, passed = check([path.resolve() for path in options.files], apis)
    options.report.write_text(report)
    print(report, end="")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
