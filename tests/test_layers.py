"""The package's layers: each subpackage imports only from its own or lower layers (no import
circle), ``tfrecords_tools`` has no import circle either, ``tuning``'s modules import only
downward (the search folder, then the report and the hypermodel, then the search CLI), and
``import emobed_tf`` loads neither Keras nor TensorFlow."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "emobed_tf")

# the layer of each part of emobed_tf, from the ground up
LAYERS = {"errors": 0, "fingerprint": 0, "io": 0, "configs": 0, "records": 1, "data": 2,
          "model": 2, "experiments": 3, "serving": 4, "cli": 5, "train": 5, "compare": 5, "sweep": 5,
          "crossval": 5, "evaluate": 5, "export": 5, "predict": 5}
GROUND = {"errors": 0, "fingerprint": 0, "io": 1, "configs": 2}  # the ground floor's own order
# the layer of each module of tuning: folder.py (search.json, refusals, trials), then report.py
# and hypermodel.py, then search.py (the CLI)
TUNING = {"tuning.folder": 0, "tuning.report": 1, "tuning.hypermodel": 1, "tuning.search": 2}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: str):
    """``emobed_tf`` modules that ``path`` imports (module level or inside functions)."""
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "emobed_tf"):
            if node.module == "emobed_tf":
                yield from (f"emobed_tf.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("emobed_tf."))


def _modules():
    for folder, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def test_every_part_has_a_layer():
    parts = {_part(m) for m, _ in _modules()} - {""}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_imports_only_go_down():
    wrong = []
    for module, path in _modules():
        if module == "emobed_tf":  # the lazy public API names every layer
            continue
        me = _part(module)
        for other in _imports(path):
            them = _part(other)
            if them == me or not them:
                continue
            up = LAYERS[them] > LAYERS[me] or (
                LAYERS[them] == LAYERS[me] and me in GROUND and GROUND[them] > GROUND[me])
            if up or (LAYERS[them] == LAYERS[me] and me not in GROUND and me in (
                    "data", "model") and them in ("data", "model")):
                wrong.append(f"{module} -> {other}")
    assert not wrong, wrong


def test_no_import_circle():
    graph = {}
    for module, path in _modules():
        graph[module] = {m for m in _imports(path) if m != module}
    _assert_no_circle(graph, skip={"emobed_tf"})


def _assert_no_circle(graph: dict, skip=frozenset()) -> None:
    """Depth-first search over ``{module: imported modules}`` (imports of modules outside
    the graph ignored); an import circle fails with its modules in order."""
    state = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(
                    trail[trail.index(nxt):] + [nxt]))
            if not state.get(nxt):
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in skip and not state.get(module):
            visit(module, [module])


def _package_graph(package: str) -> dict:
    """``{module: modules of package it imports}`` (module level or inside functions); a name
    taken from a package counts as its submodule when there is one."""
    root = os.path.join(ROOT, package)
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[rel.removesuffix(".__init__")] = path
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != package:
                    continue
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names
                            if f"{node.module}.{a.name}" in modules}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
        graph[module] = {t for t in targets if t in modules and t != module} - {package}
    return graph


def test_tfrecords_tools_has_no_import_circle():
    graph = _package_graph("tfrecords_tools")
    assert "tfrecords_tools.options" in graph and "tfrecords_tools.extract" in graph
    _assert_no_circle(graph)


def test_the_circle_check_finds_a_circle():
    with pytest.raises(AssertionError, match="import circle: b -> c -> b"):
        _assert_no_circle({"a": {"b"}, "b": {"c"}, "c": {"b", "x"}})
    _assert_no_circle({"a": {"b"}, "b": {"c"}, "c": set()})


def test_tuning_imports_only_go_down():
    graph = _package_graph("tuning")
    modules = set(graph) - {"tuning"}
    assert modules == set(TUNING), sorted(modules ^ set(TUNING))
    wrong = [f"{m} -> {t}" for m in sorted(TUNING) for t in sorted(graph[m])
             if TUNING[t] >= TUNING[m]]
    assert not wrong, wrong


def test_import_emobed_tf_loads_no_framework():
    code = ("import sys, emobed_tf\nassert emobed_tf.__version__\nemobed_tf.TrainConfig\n"
            "emobed_tf.make_folds\nprint(sorted(m for m in ('keras', 'tensorflow', 'jax') "
            "if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_every_user_error_is_an_emobed_error():
    from emobed_tf import configs, io
    from emobed_tf.errors import EmobedError
    from emobed_tf.experiments.rundir import RunError
    from emobed_tf.records.schema import DataError
    from tfrecords_tools.corpora import CorpusError
    from tfrecords_tools.face import WeightsError
    from tfrecords_tools.media import MediaError
    from tfrecords_tools.options import OptionsError

    for cls, old in ((configs.ConfigError, ValueError), (DataError, ValueError),
                     (RunError, RuntimeError), (io.LockedError, RuntimeError),
                     (io.OutputError, OSError), (CorpusError, ValueError),
                     (OptionsError, ValueError), (WeightsError, ValueError),
                     (MediaError, ValueError)):
        assert issubclass(cls, EmobedError) and issubclass(cls, old), cls
