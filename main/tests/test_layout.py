"""The code's layers (docs/architecture.md): imports point down, from the
wiring to the features, to the services they share, to the plumbing, to the
models; and no feature imports another."""

import ast

from harness.servers import ROOT

WIRING = ("booktime", "main.urls", "main.routing", "main.consumers", "main.admin", "main.apps", "main.management")
FEATURES = ("main.chat", "main.dashboard", "main.tracker", "main.api", "main.web")
CONVERSATIONS = ("main.conversations",)
SHARED = ("main.presence", "main.access")
PLUMBING = ("main.infra",)
MODELS = ("main.models", "main.signals", "main.factories")
LAYERS = [WIRING, FEATURES, CONVERSATIONS, SHARED, PLUMBING, MODELS]


def within(module, prefixes):
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def layer(module):
    return next((n for n, prefixes in enumerate(LAYERS) if within(module, prefixes)), None)


def modules():
    for path in sorted([*ROOT.glob("main/**/*.py"), *ROOT.glob("booktime/*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "tests" in parts or "migrations" in parts:
            continue
        package = parts[:-1] if parts[-1] != "__init__" else parts
        yield ".".join(parts if parts[-1] != "__init__" else parts[:-1]), package, path.read_text()


def imports(package, source):
    """The modules `source` imports (`from x import y`: x.y too, as y may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def violations(sources):
    for module, package, source in sources:
        mine = layer(module)
        for target in set(imports(package, source)):
            theirs = layer(target)
            if mine is None or theirs is None or within(target, (module,)):
                continue
            if theirs < mine:
                yield f"{module} imports {target}, a layer above it"
            if mine == theirs == 1 and within(module, FEATURES) != within(target, FEATURES):
                yield f"{module} imports {target}, another feature"
            if mine == theirs == 3 and within(module, SHARED) != within(target, SHARED):
                yield f"{module} imports {target}, another shared service"


def test_every_module_has_a_layer():
    assert [module for module, _, _ in modules() if module != "main" and layer(module) is None] == []


def test_imports_point_down_and_features_stay_apart():
    assert list(violations(modules())) == []


def test_the_checker_sees_imports_that_break_the_layers():
    probes = [
        ("main.infra.probe", ("main", "infra"), "from main.chat import service\nfrom ..presence import touch\n"),
        ("main.chat.probe", ("main", "chat"), "from main.dashboard.payloads import v1\n"),
    ]
    assert sorted(violations(probes)) == [
        "main.chat.probe imports main.dashboard.payloads, another feature",
        "main.chat.probe imports main.dashboard.payloads.v1, another feature",
        "main.infra.probe imports main.chat, a layer above it",
        "main.infra.probe imports main.chat.service, a layer above it",
        "main.infra.probe imports main.presence, a layer above it",
        "main.infra.probe imports main.presence.touch, a layer above it",
    ]
