"""The project's import graph at package level (issue 26): how many edges, and which.

    python benchmarks/import_graph.py                    # prints the edges and the counts
    python benchmarks/import_graph.py --out benchmarks/results/import_graph.json

Nodes: lerf's packages and root modules (lerf.data, lerf.model, ...; `lerf` itself when its
__init__ imports something or a caller imports a name from it), the eval/ and benchmarks/
folders, and the entry points train.py, query.py, view.py. An edge A -> B: some file of A
imports something of B, anywhere in the file (lazy imports inside functions and imports under
TYPE_CHECKING count too). Imports within one node are not edges.

Also listed: pairs of nodes that import each other (package-level cycles). Module-level cycles
are checked by tests/test_layout.py.
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ("train.py", "query.py", "view.py")
FOLDERS = ("eval", "benchmarks")


def lerf_nodes(repo: Path) -> set[str]:
    """lerf's root modules and packages, e.g. {"lerf.model", "lerf.data", ...}."""
    root = repo / "lerf"
    modules = {f"lerf.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__"}
    packages = {f"lerf.{p.name}" for p in root.iterdir() if (p / "__init__.py").is_file()}
    return modules | packages


def node_of(path: Path, repo: Path) -> str:
    """The node a file belongs to: lerf/query/run.py -> lerf.query, lerf/model/lerf_model.py -> lerf.model,
    lerf/__init__.py -> lerf, eval/x.py -> eval/, train.py -> train.py."""
    rel = path.relative_to(repo)
    if rel.parts[0] == "lerf":
        if len(rel.parts) == 2:
            return "lerf" if rel.stem == "__init__" else f"lerf.{rel.stem}"
        return f"lerf.{rel.parts[1]}"
    return rel.parts[0] + "/" if rel.parts[0] in FOLDERS else rel.name


def imported_nodes(source: str, nodes: set[str]) -> set[str]:
    """The nodes a file's imports reach. `from lerf import query` reaches lerf.query;
    `from lerf import load_run` (not a submodule) reaches `lerf`."""
    found = set()
    for stmt in ast.walk(ast.parse(source)):
        if isinstance(stmt, ast.Import):
            names = [a.name for a in stmt.names]
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
            names = [f"{stmt.module}.{a.name}" for a in stmt.names] if stmt.module == "lerf" else [stmt.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "lerf":
                continue
            head = ".".join(parts[:2])
            found.add(head if head in nodes else "lerf")
    return found


def import_graph(repo: Path = REPO) -> tuple[list[str], list[tuple[str, str]]]:
    """(nodes, edges), both sorted."""
    nodes = lerf_nodes(repo)
    files = sorted((repo / "lerf").rglob("*.py"))
    for folder in FOLDERS:
        files += sorted((repo / folder).rglob("*.py"))
    files += [repo / e for e in ENTRY_POINTS if (repo / e).is_file()]
    edges = set()
    for path in files:
        source = node_of(path, repo)
        edges |= {(source, target) for target in imported_nodes(path.read_text(), nodes) if target != source}
    used = {n for edge in edges for n in edge}
    all_nodes = nodes | {f + "/" for f in FOLDERS} | {e for e in ENTRY_POINTS if (repo / e).is_file()}
    all_nodes |= {"lerf"} & used
    return sorted(all_nodes), sorted(edges)


def mutual_pairs(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs of nodes that import each other, e.g. [("lerf.data", "lerf.demo")]."""
    have = set(edges)
    return sorted((a, b) for a, b in have if a < b and (b, a) in have)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = p.parse_args()
    nodes, edges = import_graph(args.repo.resolve())
    by_source: dict[str, list[str]] = {}
    for a, b in edges:
        by_source.setdefault(a, []).append(b)
    for source, targets in by_source.items():
        print(f"{source} ({len(targets)}): {', '.join(targets)}")
    mutual = mutual_pairs(edges)
    print(f"{len(nodes)} nodes, {len(edges)} edges; nodes importing each other: {mutual or 'none'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"nodes": nodes, "edges": edges, "mutual": mutual}, indent=1) + "\n")


if __name__ == "__main__":
    main()
