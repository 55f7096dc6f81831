#!/usr/bin/env python3
"""Import circles between the files of the workspace.

Reads every crate's `src/` (and `contract-tests/src`), resolves each `crate::…`, `super::…`,
`self::…` path (in `use` items and inline paths) and each `mod` re-export to the file that
defines the module it names, and prints every group of files that reach each other through
such imports (strongly connected components of more than one file). Test modules
(`#[cfg(test)] mod … { … }`) are left out: a file's tests may import what they test.

Then the same for the rooms of the gateway (the top-level modules of `src/`: `model`, `config`,
`runtime`, …): a room's files may import each other, but two rooms never import each other,
directly or around a longer loop. With `--verbose` it prints each room's imports, and the rooms
in an order where each imports only rooms before it.

Exit status 1 when a circle exists. Usage: python3 scripts/import-circles.py [--verbose]
"""
import os
import re
import sys

ROOTS = {
    "gateway": "src",
    "gw_broker": "crates/broker/src",
    "gw_store": "crates/store/src",
    "gw_crypto": "crates/crypto/src",
    "gw_testkit": "crates/testkit/src",
    "gw_contract_tests": "contract-tests/src",
}

PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)
MOD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*([;{])")


def module_files(src):
    """module path (tuple) -> file, for one crate."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel == ["lib"] or rel == ["main"]:
                mods[()] = full if rel == ["lib"] or () not in mods else mods[()]
                continue
            if rel[-1] == "mod":
                rel = rel[:-1]
            mods[tuple(rel)] = full
    return mods


def strip_tests(text):
    """Remove `#[cfg(test)]`-gated inline modules and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    pat = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    return "".join(out)


def inline_module_at(text):
    """For each offset, the inline `mod x { … }` nesting (list of names) — computed lazily."""
    spans = []
    for m in re.finditer(r"\bmod\s+([A-Za-z_]\w*)\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        spans.append((m.start(), j, m.group(1)))

    def at(pos):
        return [name for (a, b, name) in spans if a <= pos < b]

    return at


def resolve(mods, base, kind, segs):
    """The file of the longest module prefix of the path."""
    if kind == "crate":
        path = []
    elif kind == "self":
        path = list(base)
    else:  # super, possibly repeated
        path = list(base[:-1])
        while segs and segs[0] == "super":
            path = path[:-1]
            segs = segs[1:]
    full = path + list(segs)
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return mods[tuple(full[:n])]
    return None


def edges_of(crate_src):
    mods = module_files(crate_src)
    file_mod = {f: m for m, f in mods.items()}
    edges = {f: set() for f in mods.values()}
    for f, m in file_mod.items():
        text = strip_tests(open(f, encoding="utf-8").read())
        at = inline_module_at(text)
        paths = []
        for g in USE_GROUP_RE.finditer(text):
            kind, prefix, inner = g.group(1), g.group(2), g.group(3)
            pre = [s for s in prefix.split("::") if s]
            for item in re.split(r"[,{}]", inner):
                item = item.strip().split(" as ")[0].strip()
                if not item:  # a trailing comma, or the seam of a nested group
                    continue
                if item != "self" and item != "*":
                    paths.append((g.start(), kind, pre + item.split("::")))
                else:
                    paths.append((g.start(), kind, pre))
        for p in PATH_RE.finditer(text):
            paths.append((p.start(), p.group(1), [s for s in p.group(2).split("::") if s]))
        # `pub use child::X` re-exports and `child::f()` calls from a parent module.
        for p in re.finditer(r"(?<![:\w])([a-z_][a-z0-9_]*)::[A-Za-z_]", text):
            name = p.group(1)
            if name in ("crate", "super", "self", "std", "core", "alloc"):
                continue
            paths.append((p.start(), "self", [name]))
        for pos, kind, segs in paths:
            base = list(m) + at(pos)
            target = resolve(mods, tuple(base), kind, segs) if kind != "self" or segs else None
            if kind == "self" and segs and (tuple(base) + (segs[0],)) not in mods:
                continue
            if target and target != f:
                edges[f].add(target)
    return edges


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
            out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def room_graph(file_edges, src):
    """Collapse file imports to imports between the top-level modules of a crate."""
    def room(f):
        rel = os.path.relpath(f, src).split(os.sep)
        return rel[0][:-3] if len(rel) == 1 else rel[0]

    graph = {}
    for f, targets in file_edges.items():
        r = room(f)
        if r in ("lib", "main"):
            continue
        graph.setdefault(r, set())
        for t in targets:
            rt = room(t)
            if rt not in (r, "lib", "main"):
                graph[r].add(rt)
    return graph


def topological(graph):
    """Rooms in an order where each imports only rooms listed before it (cycles last)."""
    order, done = [], set()
    pending = sorted(graph)
    while pending:
        ready = [r for r in pending if graph[r] <= done]
        if not ready:
            return order + pending
        for r in ready:
            order.append(r)
            done.add(r)
        pending = [r for r in pending if r not in done]
    return order


def main():
    verbose = "--verbose" in sys.argv
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    found = 0
    files = 0
    for crate, src in ROOTS.items():
        if not os.path.isdir(src):
            continue
        g = edges_of(src)
        files += len(g)
        for comp in sccs(g):
            found += 1
            print(f"circle in {crate}: {len(comp)} files")
            for f in sorted(comp):
                inside = sorted(t for t in g[f] if t in comp)
                print(f"  {f} -> {', '.join(inside)}")
        if verbose:
            print(f"{crate}: {len(g)} files, {sum(len(v) for v in g.values())} imports")
    rooms = room_graph(edges_of(ROOTS["gateway"]), ROOTS["gateway"])
    for comp in sccs(rooms):
        found += 1
        print(f"circle between rooms of gateway: {', '.join(sorted(comp))}")
    if verbose:
        for room in topological(rooms):
            print(f"  {room} -> {', '.join(sorted(rooms[room])) or '(nothing)'}")
    print(f"{files} files, {len(rooms)} rooms, {found} import circle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
