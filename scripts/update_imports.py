# The import graph inside src/update/ (issue 24): imports of the parent (mod.rs)
# by its submodules, and cycles, without and with mod.rs as a node.
#   python3 scripts/update_imports.py [REPO_ROOT]
import re, os, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
d = os.path.join(root, "src/update")
mods = {f[:-3] for f in os.listdir(d) if f.endswith(".rs")} - {"mod"}
edges = {m: set() for m in mods}
up = []
for m in mods:
    src = open(os.path.join(d, m + ".rs")).read()
    # drop #[cfg(test)] mod tests
    src = src.split("#[cfg(test)]\nmod tests")[0]
    for mt in re.finditer(r"super::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)", src):
        g = mt.group(1)
        names = [x.strip().split("::")[0] for x in g.strip("{}").split(",")] if g.startswith("{") else [g]
        for n in names:
            if not n or n == "*" or n == "self":
                continue
            if n in mods:
                edges[m].add(n)
            else:
                up.append((m, n))
# cycles: SCCs via Tarjan
idx, low, on, st, sccs, c = {}, {}, set(), [], [], [0]
def strong(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in sorted(mods):
    if v not in idx: strong(v)
print(f"{len(mods)} submodules, {sum(len(e) for e in edges.values())} sibling imports")
print(f"imports from the parent (mod.rs): {len(set(up))}: {sorted(set(up))}")
print(f"cycles (strongly connected groups): {len(sccs)}: {sccs}")
# with mod.rs as a node: its uses of submodules, and the submodules' imports from it
msrc = open(os.path.join(d, "mod.rs")).read()
edges["mod"] = {m for m in mods if re.search(r"\b%s::" % m, msrc)}
for m, n in up:
    edges[m].add("mod")
mods.add("mod")
idx.clear(); low.clear(); on.clear(); st.clear(); sccs.clear(); c[0] = 0
for v in sorted(mods):
    if v not in idx: strong(v)
print(f"with mod.rs: cycles: {len(sccs)}: {sccs}")
