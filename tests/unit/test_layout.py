"""The logic's layers, read from the code (README: Architecture): every import in
actions/lib/dvremedy points one way. The model is pure and imports neither the adapters nor the
steps; the adapters know nothing of the model or the steps; the steps drive both; the runner
drives the adapters for the steps it is given but imports no step. The actions are st2 glue and
the only modules that import st2."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "actions", "lib", "dvremedy")
LAYER = {"errors": "base", "settings": "base", "budget": "runner", "runner": "runner"}
MAY_IMPORT = {
    "base": {"base"},
    "model": {"base", "model"},
    "adapters": {"base", "adapters"},
    "steps": {"base", "model", "adapters", "steps"},
    "runner": {"base", "runner", "adapters"},
    "action": {"base", "runner", "steps", "model"},
}
# what a pure module must never touch: processes, files, the network, clocks it sleeps on
IO_MODULES = {"os", "socket", "subprocess", "tempfile", "shutil", "time", "threading",
              "concurrent", "paramiko", "openstack", "keystoneauth1", "requests", "kombu"}


def layer_of(dotted):
    """'dvremedy.model.plan' -> 'model'; 'dvremedy.errors' -> 'base'."""
    parts = dotted.split(".")
    if parts[1] in ("model", "adapters", "steps"):
        return parts[1]
    return LAYER[parts[1]]


def imports_of(path):
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module in ("dvremedy", "dvremedy.model", "dvremedy.adapters",
                               "dvremedy.steps"):
                found.update("%s.%s" % (node.module, a.name) for a in node.names)
    return found


def modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py") and name != "__init__.py":
                rel = os.path.relpath(os.path.join(folder, name), PACKAGE)[:-3]
                yield "dvremedy." + rel.replace(os.sep, "."), os.path.join(folder, name)


def actions():
    folder = os.path.join(REPO, "actions")
    return [("action " + n, os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if n.endswith(".py")]


def test_the_three_folders_exist_and_hold_the_logic():
    found = {layer_of(name) for name, _ in modules()}
    assert found == {"base", "model", "adapters", "steps", "runner"}


@pytest.mark.parametrize("name, path", list(modules()) + actions(),
                         ids=lambda v: v if not v.startswith("/") else "")
def test_imports_point_one_way(name, path):
    layer = "action" if name.startswith("action ") else layer_of(name)
    ours = sorted(m for m in imports_of(path) if m.startswith("dvremedy."))
    wrong = [m for m in ours if layer_of(m) not in MAY_IMPORT[layer]]
    assert not wrong, "%s (%s) may import only %s; it imports %s" % (
        name, layer, sorted(MAY_IMPORT[layer]), wrong)
    st2 = sorted(m for m in imports_of(path) if m.split(".")[0] in ("st2common", "st2client"))
    assert layer == "action" or not st2, \
        "%s imports st2 (%s): only the actions are st2 glue" % (name, st2)


@pytest.mark.parametrize("name, path", [m for m in modules() if layer_of(m[0]) == "model"],
                         ids=lambda v: v if not v.startswith("/") else "")
def test_the_model_does_no_io(name, path):
    io = sorted(m for m in imports_of(path) if m.split(".")[0] in IO_MODULES)
    assert not io, "%s is in the pure model but imports %s" % (name, io)
