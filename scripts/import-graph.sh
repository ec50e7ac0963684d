#!/usr/bin/env bash
# The import graph of src/: which module uses which (`crate::a::b` anywhere in a
# file, `use crate::{a, b}`, `super::x`), checked against the layers below. Prints
# each upward import (a module using one of a higher layer), each submodule that
# uses its parent (counted apart, not a failure), and each cycle (a strongly
# connected set of modules), then the counts; exits 1 if there is an upward import
# or a cycle. Modules are the files of src/ (`update::window`); a parent's use of
# its own submodules by relative path (`driver::x` in update/mod.rs) is not seen.
#
# Usage: scripts/import-graph.sh [--edges]   (--edges: print the whole graph first)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

# Lowest first. A module may use its own layer and those below; a module not listed
# is reported. One line per layer, each a set of modules (a prefix `update::` names
# every module under it).
LAYERS = [
    "hex percent build_info clock self_pipe signals help backoff http_target",
    "redact",
    "error state_paths version",
    "fsutil child_output logging protocol status window",
    "history progress",
    "config cli",
    "tls transport key",
    "context",
    "license health",
    "budget",
    "services update:: telemetry::",
    "security leftovers doctor admin::",
    "daemon",
    "commands",
    "lib main",
]

def module_of(path):
    rel = os.path.relpath(path, "src")[:-3]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)

files = []
for root, _, names in os.walk("src"):
    for n in names:
        if n.endswith(".rs"):
            files.append(os.path.join(root, n))
mods = {module_of(f): f for f in files}

def resolve(name):
    """The longest known module that `name` (a::b::c) is in."""
    parts = name.split("::")
    while parts:
        m = "::".join(parts)
        if m in mods:
            return m
        parts = parts[:-1]
    return None

def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # Unit tests may reach anywhere (`#[cfg(test)] mod tests` at the end of a file).
    i = text.find("#[cfg(test)]\nmod tests")
    return text if i < 0 else text[:i]

def expand(group):
    """`a::{b, c::{d}}` -> [a::b, a::c::d] (enough for use trees)."""
    m = re.match(r"^([\w:]*?)\{(.*)\}$", group.strip(), re.S)
    if not m:
        return [group.strip()]
    head, body = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            out.append(cur); cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    out.append(cur)
    res = []
    for o in out:
        if o.strip():
            res += [head + x for x in expand(o.strip())]
    return res

edges = {}
for m, f in mods.items():
    text = strip(open(f).read())
    names = []
    for u in re.finditer(r"\buse\s+(crate::[^;]+);", text):
        names += expand(u.group(1))
    names += re.findall(r"\bcrate::(?:[a-z_]+::)*[a-z_]+", text)
    parent = m.rsplit("::", 1)[0] if "::" in m else ""
    for u in re.finditer(r"\buse\s+(super::[^;]+);", text):
        names += [n.replace("super::", "crate::" + parent + "::" if parent else "crate::", 1) for n in expand(u.group(1))]
    names += [("crate::" + parent + "::" if parent else "crate::") + x
              for x in re.findall(r"\bsuper::((?:[a-z_]+::)*[a-z_]+)", text)]
    for n in names:
        n = re.sub(r"\s+", "", n)
        n = n[len("crate::"):] if n.startswith("crate::") else n
        n = n.split(" as ")[0]
        t = resolve(n)
        if t and t != m and t != "lib" and t != "main":
            edges.setdefault(m, set()).add(t)

def layer(m):
    for i, l in enumerate(LAYERS):
        for w in l.split():
            if w == m or (w.endswith("::") and (m + "::").startswith(w)):
                return i
    return None

if "--edges" in sys.argv:
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a]))}")

problems = 0
unlisted = sorted(m for m in mods if layer(m) is None)
for m in unlisted:
    print(f"not in a layer: {m}")
    problems += 1

upward, to_parent = [], []
for a in sorted(edges):
    for b in sorted(edges[a]):
        la, lb = layer(a), layer(b)
        if "::" in a and b == a.rsplit("::", 1)[0]:
            # A submodule using its own parent (`super::`), the façade over it:
            # shown apart (issue 24 item 1 is about update::driver's).
            to_parent.append((a, b))
        elif la is not None and lb is not None and lb > la:
            upward.append((a, b))
for a, b in upward:
    print(f"upward: {a} -> {b}")
for a, b in to_parent:
    print(f"uses its parent: {a} -> {b}")

# Tarjan's strongly connected components.
index, low, on, stack, sccs, n = {}, {}, set(), [], [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in sorted(mods):
    if v not in index:
        visit(v)
for c in sccs:
    print(f"cycle: {' <-> '.join(c)}")

print(f"upward imports: {len(upward)}")
print(f"submodules using their parent: {len(to_parent)}")
print(f"cycles: {len(sccs)}")
sys.exit(1 if upward or sccs or problems else 0)
PY
