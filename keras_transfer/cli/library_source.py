"""The library's option values and defaults, read from its source so that `--help` imports no TensorFlow.

The commands show the library's own choices (`deploy.export.FORMATS`) and
defaults (`export(format="tflite")`) in their help, never copies. Importing the
modules that define them would load TensorFlow (seconds), so they are read
from the source instead: literal constants (tuples of literals, `*NAME`
unpacking of other such constants, across `from ... import`) and the literal
defaults of functions and methods. A test checks each value
read here against the imported module's (tests/test_cli_output.py).
"""

import ast
import functools
import os

_PACKAGE = "keras_transfer"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def _module_tree(module):
    """The parsed source of `module` (a keras_transfer module name), found without importing it."""
    parts = module.split(".")
    if parts[0] != _PACKAGE:
        raise ValueError(f"{module!r} is not a {_PACKAGE} module")
    base = os.path.join(_PACKAGE_DIR, *parts[1:])
    path = base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")
    with open(path, encoding="utf-8") as file:
        return ast.parse(file.read(), filename=path)


def constant(module, name):
    """The value of the module-level constant `name` of `module`."""
    tree = _module_tree(module)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _evaluate(node.value, module)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(_PACKAGE):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return constant(node.module, alias.name)
    raise LookupError(f"{module}.{name} is not a literal constant")


def default(module, function, argument):
    """The default of `argument` of `function` (`"export"`, or `"Quantization.int8"` for a method) in `module`."""
    body = _module_tree(module).body
    for part in function.split("."):
        node = next(
            (n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part),
            None,
        )
        if node is None:
            raise LookupError(f"{module}.{function} not found")
        body = node.body
    arguments = node.args
    positional = arguments.posonlyargs + arguments.args
    pairs = list(zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults))
    pairs += [(arg, value) for arg, value in zip(arguments.kwonlyargs, arguments.kw_defaults) if value is not None]
    for arg, value in pairs:
        if arg.arg == argument:
            return _evaluate(value, module)
    raise LookupError(f"{module}.{function} has no default for {argument!r}")


def _evaluate(node, module):
    if isinstance(node, ast.Name):
        return constant(module, node.id)
    if isinstance(node, (ast.Tuple, ast.List)):
        values = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                values.extend(_evaluate(element.value, module))
            else:
                values.append(_evaluate(element, module))
        return tuple(values) if isinstance(node, ast.Tuple) else values
    return ast.literal_eval(node)
