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


def _readme_bullet(folder):
    """The backticked names of README's Architecture bullet about one folder."""
    import re
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    bullet = section.split("- `%s`" % folder, 1)[1].split("\n- ", 1)[0]
    return set(re.findall(r"`([A-Za-z_0-9]+)`", bullet))


@pytest.mark.parametrize("folder", ["model", "adapters", "steps"])
def test_the_readme_architecture_names_every_module_of_each_folder(folder):
    on_disk = {n[:-3] for n in os.listdir(os.path.join(PACKAGE, folder))
               if n.endswith(".py") and n != "__init__.py"}
    named = _readme_bullet("actions/lib/dvremedy/%s/" % folder)
    assert on_disk <= named, "README's Architecture does not name %s" % sorted(on_disk - named)
    assert not (named - on_disk) - {"openstacksdk", "paramiko"}, \
        "README's Architecture names what %s/ does not hold: %s" % (folder, sorted(named - on_disk))


def test_the_readme_architecture_names_every_sensor_module():
    on_disk = {n for n in os.listdir(os.path.join(REPO, "sensors")) if n.endswith(".py")}
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("## Architecture", 1)[1].split("\n## ", 1)[0]
    assert all("`%s`" % n in section for n in on_disk), sorted(
        n for n in on_disk if "`%s`" % n not in section)
