"""Lint as the StackStorm-Exchange CI does (docs/stackstorm.md, "Lint"), in one run:
compile, flake8 (max line length 100, the Exchange ignore list), pylint -E on actions/ and
sensors/ (with st2 importable: run it with a pack venv's Python), every YAML parses, and the
example pack config validates against config.schema.yaml with st2's own code (what
st2-validate-pack-config runs). Usage: lint.py DIR..."""
import compileall
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".lab", ".venvs", "__pycache__", ".pytest_cache"}
FLAKE8 = ["--max-line-length", "100", "--ignore", "E128,E402,E722,W504"]


def yaml_files():
    for top, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith((".yaml", ".yml", ".yaml.example")):
                yield os.path.join(top, name)


def check_yaml():
    bad = 0
    for path in yaml_files():
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except yaml.YAMLError as exc:
            print("YAML does not parse: %s: %s" % (os.path.relpath(path, REPO), exc))
            bad += 1
    return bad


def check_example_config():
    """st2-validate-pack-config's checks: config.schema.yaml is a valid ConfigSchemaAPI and the
    example config validates against it (st2common.util.pack.validate_config_against_schema)."""
    from st2common.models.api.pack import ConfigSchemaAPI
    from st2common.util.pack import validate_config_against_schema

    schema_path = os.path.join(REPO, "config.schema.yaml")
    example = os.path.join(REPO, "dangling_volume.yaml.example")
    if not os.path.exists(schema_path):
        return 0
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    with open(example) as f:
        config = yaml.safe_load(f) or {}
    try:
        ConfigSchemaAPI(pack="dangling_volume", attributes=schema).validate()
        validate_config_against_schema(schema, config, example, "dangling_volume")
    except Exception as exc:  # jsonschema.ValidationError, st2's ValueValidationException
        print("%s: %s" % (os.path.relpath(example, REPO), getattr(exc, "message", exc)))
        return 1
    return 0


def run(argv, env=None):
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=REPO, env=env).returncode


def main(dirs):
    failures = 0
    bindir = os.path.dirname(sys.executable)
    for d in dirs:
        if not compileall.compile_dir(os.path.join(REPO, d), quiet=1):
            failures += 1
    failures += bool(run([os.path.join(bindir, "flake8")] + FLAKE8 + list(dirs)))
    # Each tree with what its st2 process sees: actions with actions/lib, the sensor with
    # sensors/ only (st2 does not give a sensor actions/lib: importing it must fail here).
    for tree, own_path in (("actions", os.path.join(REPO, "actions", "lib")),
                           ("sensors", os.path.join(REPO, "sensors"))):
        if not os.path.isdir(os.path.join(REPO, tree)):
            continue
        env = dict(os.environ, PYTHONPATH=own_path)  # st2 comes from the venv's site-packages
        failures += bool(run([os.path.join(bindir, "pylint"), "-E", tree], env=env))
    failures += check_yaml()
    failures += check_example_config()
    print("lint: %s" % ("ok" if not failures else "%d problem(s)" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
