"""Issue 14 conventions: no import cycles, the core independent of the demo package, one
spec registry used everywhere, every module listed in its package docstring."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import region_rerank
from region_rerank.cli import build_parser
from region_rerank.croppers.specs import CROPPERS, needs_scorer
from region_rerank.scorers.specs import SCORERS
from region_rerank.specs import markdown_table, usage_line

ROOT = Path(region_rerank.__file__).parent
#: Packages that are not the core (they may use the demo world and each other).
NOT_CORE = ("region_rerank.demo", "region_rerank.bench", "region_rerank.eval",
            "region_rerank.train", "region_rerank.cli", "region_rerank.convert_cli")  # fmt: skip
#: The core modules allowed to name the demo package: the registries whose ``demo`` /
#: ``dense:demo`` entries import it lazily, only when that spec is built.
DEMO_SPEC_ENTRIES = ("region_rerank.scorers.specs", "region_rerank.croppers.encoder_specs")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _runtime_imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """region_rerank modules imported by ``path`` (also inside functions), except under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out: set[str | None] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(resolve(a.name) for a in node.names if a.name.startswith("region_rerank"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("region_rerank")
        ):
            module = str(node.module)
            for a in node.names:
                full = f"{module}.{a.name}"
                out.add(full if full in mods else resolve(module))
    out.discard(None)
    return {m for m in out if m is not None}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _runtime_imports(p, mods) - {m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_the_core_does_not_import_the_demo_package() -> None:
    offenders = {
        m: sorted(d for d in deps if d.startswith("region_rerank.demo"))
        for m, deps in _graph().items()
        if not m.startswith(NOT_CORE) and m not in DEMO_SPEC_ENTRIES
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_every_spec_kind_is_in_the_cli_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "eval" in a.choices)  # type: ignore[operator]
    for command in ("crop", "eval"):
        help_text = " ".join(sub.choices[command].format_help().split())
        for entry in CROPPERS.values():
            assert entry.usage in help_text, (command, entry.usage)
    help_text = " ".join(sub.choices["eval"].format_help().split())
    for entry in SCORERS.values():
        assert entry.usage in help_text


def test_the_registry_answers_what_was_hand_written() -> None:
    assert needs_scorer("text_match") and needs_scorer("proposal:/some/weights.safetensors")
    assert not needs_scorer("grounding:google/owlv2-base-patch16-ensemble")
    assert not needs_scorer("no_such_kind")
    table = markdown_table("cropper")
    assert all(f"`{e.usage}`" in table for e in CROPPERS.values())
    assert usage_line("scorer").split(" | ") == [e.usage for e in SCORERS.values()]
    # No list of spec kinds is written by hand elsewhere.
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert 'startswith(("text_match"' not in text, path


def test_every_module_is_listed_in_its_package_docstring() -> None:
    missing = []
    for info in pkgutil.walk_packages(region_rerank.__path__, "region_rerank."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        doc = package.__doc__ or ""
        for sub in pkgutil.iter_modules(package.__path__):
            if not re.search(rf"\b{re.escape(sub.name)}\b", doc):
                missing.append(f"{info.name}.{sub.name}")
    top = region_rerank.__doc__ or ""
    for sub in pkgutil.iter_modules(region_rerank.__path__):
        if not sub.name.startswith("_") and not re.search(rf"\b{re.escape(sub.name)}\b", top):
            missing.append(f"region_rerank.{sub.name}")
    assert missing == []


@pytest.mark.parametrize("spec", ["nope", "st", "full:x", "center:half"])
def test_bad_specs_are_config_errors(spec: str) -> None:
    from region_rerank.errors import ConfigError
    from region_rerank.factory import build_cropper, build_scorer

    with pytest.raises(ConfigError):
        build_scorer(spec) if spec == "st" else build_cropper(spec)


def test_every_public_name_resolves_from_the_top_level() -> None:
    for name in region_rerank.__all__:
        assert getattr(region_rerank, name) is not None, name
    from region_rerank import DemoScorer, EmbeddingCache, ProposalPolicyCropper, build_cropper

    assert DemoScorer.__module__ == "region_rerank.demo.scorer"
    assert EmbeddingCache.__name__ == "EmbeddingCache"
    assert ProposalPolicyCropper.__name__ == "ProposalPolicyCropper"
    assert build_cropper("full").name == "full"


def test_the_docs_show_the_registry_tables() -> None:
    """The spec tables of docs/components.md are the registry's output."""
    repo = ROOT.parent
    for page in (repo / "docs" / "components.md",):
        text = page.read_text(encoding="utf-8")
        for what in ("cropper", "scorer"):
            rows = markdown_table(what).strip().splitlines()[2:]
            assert all(row in text for row in rows), (page.name, what)


def test_the_readme_stays_short_and_links_into_the_docs() -> None:
    """The README is an entry point of at most ~200 lines; its links resolve."""
    repo = ROOT.parent
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[\w./-]+\.md)\)", text)
    assert len(links) >= 8, links
    missing = [link for link in links if not (repo / link).is_file()]
    assert not missing, missing
