"""The hand-written stub `_core.pyi` declares exactly the native module's functions, with the same
parameter names."""

import ast
import inspect
from pathlib import Path

import raysplat
from raysplat import _core

STUB = Path(raysplat.__file__).with_name("_core.pyi")


def _stub_functions() -> dict[str, list[str]]:
    tree = ast.parse(STUB.read_text())
    return {
        node.name: [a.arg for a in node.args.args] for node in tree.body if isinstance(node, ast.FunctionDef)
    }


def test_stub_lists_every_native_function_with_its_parameters():
    stubs = _stub_functions()
    native = {name: obj for name, obj in vars(_core).items() if callable(obj) and not name.startswith("_")}
    assert set(stubs) == set(native)
    for name, fn in native.items():
        params = list(inspect.signature(fn).parameters)
        assert params == stubs[name], name
