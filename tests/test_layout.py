"""The package layout holds: every import in src/shoal goes down the layers, no two
modules import each other (directly or round a loop, type-only imports included), and
heavy libraries load only where they are used.

Every import statement is read (ast): absolute and relative, at module level, inside
functions and under ``if TYPE_CHECKING``. The layers and the edges allowed between them
are the table below; docs/design.md ("Layers") draws the same table.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import shoal

ROOT = Path(shoal.__file__).parent

# Layer of a module: the first part of its name under ``shoal``. ``base`` is the
# root's leaves every layer may use (_errors, _version, and _url: the one URL splitter,
# standard library only, shared by the HTTP client and the crawler).
BASE = {"shoal._errors", "shoal._version", "shoal._url"}

# Which layers each layer may import (besides itself and ``base``). Downward only:
#
#     cli  ->  report  ->  crawler  ->  runtime, state, http  ->  base
#
# runtime, state and http know nothing of each other. ``shoal`` (the package's
# __init__) re-exports the runtime eagerly and the crawler lazily; ``__main__`` runs
# the command line.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "runtime": set(),
    "state": set(),
    "http": set(),
    "crawler": {"runtime", "state", "http"},
    "report": {"crawler", "state"},
    "cli": {"report", "crawler", "state"},
    "shoal": {"runtime", "crawler"},
    "__main__": {"cli"},
}

# Seams inside a layer, (importer prefix, forbidden prefix, why).
FORBIDDEN: list[tuple[str, str, str]] = [
    # The outputs depend on plain protocols and the record schema, not on how pages are
    # fetched, queued or parsed.
    ("shoal.crawler.output", "shoal.crawler._fetch", "outputs take an Exchange protocol"),
    # They take the frontier's contract (frontier._base: the Lease they end, the Frontier
    # they commit to), never a backend.
    ("shoal.crawler.output", "shoal.crawler.frontier.memory", "outputs use frontier._base"),
    ("shoal.crawler.output", "shoal.crawler.frontier.sqlite", "outputs use frontier._base"),
    ("shoal.crawler.output", "shoal.crawler._records", "the schema is in crawler._schema"),
    ("shoal.crawler.output", "shoal.crawler._crawler", "the engine is above its outputs"),
    ("shoal.crawler._records", "shoal.crawler.output", "the schema is in crawler._schema"),
    # One transport contract, in http._transport; a client never imports another.
    ("shoal.http._urllib3", "shoal.http._client", "the contract is in http._transport"),
    ("shoal.http._client", "shoal.http._urllib3", "the contract is in http._transport"),
    # The crawler sees the transport through shoal.http's public names only.
    ("shoal.crawler", "shoal.http._", "use shoal.http's exported names"),
]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool  # under ``if TYPE_CHECKING``

    def __str__(self) -> str:
        where = " (TYPE_CHECKING)" if self.type_only else ""
        return f"{self.source} -> {self.target} (line {self.line}){where}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = ["shoal", *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` is, or the longest known module it is inside of."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    inside.update(id(n) for n in ast.walk(child))
    return inside


def imports(known: dict[str, Path]) -> list[Edge]:
    """Every shoal-to-shoal import of every module, wherever it is written."""
    edges: list[Edge] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        type_only = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from pkg import sub`` imports the module pkg.sub when there is one.
                targets = [
                    f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem
                    for alias in node.names
                ]
            for target in targets:
                if not target.startswith("shoal"):
                    continue
                resolved = _resolve(target, known)
                assert resolved is not None, f"{name} imports {target}, which does not exist"
                if resolved != name:
                    edges.append(Edge(name, resolved, node.lineno, id(node) in type_only))
    return edges


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "shoal":
        return "shoal"
    part = module.split(".")[1]
    return part


def layer_violations(edges: list[Edge]) -> list[str]:
    bad = []
    for e in edges:
        mine, theirs = layer(e.source), layer(e.target)
        if theirs in (mine, "base"):
            continue
        if theirs not in ALLOWED[mine]:
            bad.append(f"{e}: layer {mine} may not import layer {theirs}")
    for e in edges:
        for source, target, why in FORBIDDEN:
            inside = e.source == source or e.source.startswith(source + ".")
            if inside and (e.target == target or e.target.startswith(target)):
                if e.target.startswith(source):  # a package importing its own parts
                    continue
                bad.append(f"{e}: {why}")
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import loops (one per strongly connected component of more than one module),
    every edge counted: a loop of annotations under ``if TYPE_CHECKING`` is never
    executed, but it is still two modules that cannot be read or changed apart."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --- the checks ---------------------------------------------------------------------


def test_every_import_goes_down_the_layers() -> None:
    known = modules()
    edges = imports(known)
    assert len(edges) > 100  # the reader sees the imports (a broken walk finds none)
    assert layer_violations(edges) == []


def _loop_edges(edges: list[Edge], loop: list[str]) -> str:
    inside = set(loop)
    shown = {str(e) for e in edges if e.source in inside and e.target in inside}
    return "\n  ".join(sorted(shown))


def test_the_runtime_has_no_import_cycle() -> None:
    """Not even a type-only one: a runtime module that must name the Pool to annotate what
    it is handed is reaching into the pool, and belongs in it or behind an interface."""
    edges = imports(modules())
    assert any(e.source.startswith("shoal.runtime.") for e in edges)
    loops = [c for c in cycles(edges) if any(m.startswith("shoal.runtime") for m in c)]
    assert loops == [], "\n".join(f"loop:\n  {_loop_edges(edges, c)}" for c in loops)


def test_no_import_cycles() -> None:
    edges = imports(modules())
    loops = cycles(edges)
    assert loops == [], "\n".join(f"loop:\n  {_loop_edges(edges, c)}" for c in loops)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """Each kind of bad import, written into a copy of a tiny tree, is reported."""
    tree = {
        "__init__.py": "",
        "_errors.py": "",
        "runtime/__init__.py": "from ..http import x\n",  # a layer sideways
        "http/__init__.py": "",
        "http/_client.py": "",
        "http/_urllib3.py": "def f():\n    from ._client import C\n",  # inside a function
        "crawler/__init__.py": "",
        "crawler/_a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from ..cli import main\nfrom . import _b\n",  # up, under TYPE_CHECKING
        "crawler/_b.py": "import shoal.crawler._a\n",  # absolute, and a loop with _a
        "cli/__init__.py": "",
        "state/__init__.py": "",
        "state/_store.py": "from . import _rows\n",
        "state/_rows.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from ._store import Store\n",  # a loop that is type-only on one side
    }
    for rel, text in tree.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    known = {module_name(p, tmp_path): p for p in sorted(tmp_path.rglob("*.py"))}
    edges = imports(known)
    bad = "\n".join(layer_violations(edges))
    assert "shoal.runtime -> shoal.http" in bad
    assert "shoal.crawler._a -> shoal.cli" in bad
    assert "shoal.http._urllib3 -> shoal.http._client" in bad
    assert sorted(cycles(edges)) == [
        ["shoal.crawler._a", "shoal.crawler._b"],
        ["shoal.state._rows", "shoal.state._store"],
    ]


def _loaded_after(code: str) -> set[str]:
    probe = textwrap.dedent(code) + "\nimport sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return {name.partition(".")[0] for name in out.stdout.split()}


HEAVY = {
    "click", "redis", "warcio", "jinja2", "httptools", "urllib3", "rich", "selectolax",
    "playwright",
}  # fmt: skip


def test_import_shoal_loads_no_heavy_library() -> None:
    assert _loaded_after("import shoal") & HEAVY == set()


def test_the_transport_contract_loads_no_client() -> None:
    loaded = _loaded_after("from shoal.http import Transport, Response, TransportError")
    assert loaded & {"httptools", "urllib3", "brotli"} == set()


def test_a_jsonl_crawl_does_not_load_warcio(tmp_path: Path) -> None:
    code = f"""
        from sites import Site, html
        from shoal import Crawler
        with Site() as site:
            site.routes.update({{"/": html("home", "/a"), "/a": html("a")}})
            out = {str(tmp_path / "out.jsonl")!r}
            result = Crawler(site.url("/"), output=out, progress=False).run()
        assert result.pages == 2, result
        import sys
        assert "warcio" not in sys.modules
        assert "shoal.crawler.output._jsonl" in sys.modules
    """
    tests = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tests,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    assert out.returncode == 0, out.stderr


def test_the_crawler_is_composed_of_parts_not_mixins() -> None:
    # #21: following a page starts at Crawler.run(), which builds its parts (RunSession,
    # Jobs, a PageFetcher) and hands each what it needs; no part declares another's
    # members for the type checker.
    from shoal.crawler import Crawler

    assert Crawler.__bases__ == (object,)
    for name in ("_session.py", "_jobs.py", "_crawler.py"):
        source = (ROOT / "crawler" / name).read_text()
        assert "if TYPE_CHECKING:" not in source, name
