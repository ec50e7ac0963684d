# gdb script for scripts/update-path.sh: a breakpoint on every function of the
# agent's own (by address, from `nm -C`: gdb cannot break on Rust names by name),
# each hit under `update::update_now` written as: CALL module, function, the modules
# of the agent's frames on the stack (outermost first), the calling function.
import gdb
import os
import re

OUT = open(os.environ["UPDATE_PATH_OUT"], "w")
ROOT = "cybersensei_agent::update::update_now"


def ours(name):
    return name.startswith("cybersensei_agent::") or name.startswith("<cybersensei_agent::")


def strip_generics(n):
    # `f<T>` -> `f`, innermost first, so `a::b<c::D<e::F>>::g` -> `a::b::g`.
    while True:
        m = re.search(r"(?<=[A-Za-z0-9_])<[^<>]*>", n)
        if not m:
            return n
        n = n[: m.start()] + n[m.end() :]


def module(name):
    n = name
    if n.startswith("<"):
        # `<a::B as c::D>::f`: the module of the self type.
        depth = 0
        for i, ch in enumerate(n):
            depth += ch == "<"
            depth -= ch == ">"
            if depth == 0:
                break
        n = n[1:i].split(" as ")[0] + "::f"
        if n.startswith("impl "):
            n = n[5:]
    n = strip_generics(n)
    parts = n.split("::")
    # Closures (`{{closure}}`, `{closure#0}`) belong to their function.
    while parts and parts[-1][:1] == "{":
        parts.pop()
    if parts and parts[0] == "cybersensei_agent":
        parts = parts[1:]
    mods = []
    for p in parts[:-1]:
        # A type, an impl block, a closure, or serde's `const _` block: the module
        # ends here.
        if p[:1].isupper() or p in ("", "_") or p[:1] in "{<":
            break
        mods.append(p)
    return "::".join(mods) or "(crate)"


NAMES = {}


def record():
    f = gdb.newest_frame()
    top = NAMES.get(f.pc())
    if top is None:
        return
    names = []
    f = f.older()
    while f is not None:
        n = f.name() or ""
        if ours(n):
            names.append(n)
        f = f.older()
    if top.startswith(ROOT):
        names.insert(0, top)
        OUT.write("CALL %s\t%s\t\t\n" % (module(top), top))
        OUT.flush()
        return
    idx = next((i for i, n in enumerate(names) if n.startswith(ROOT)), None)
    if idx is None:
        return
    stack = [module(n) for n in names[: idx + 1]]
    caller = strip_generics(names[0])
    OUT.write("CALL %s\t%s\t%s\t%s\n" % (module(top), top, "|".join(reversed(stack)), caller))
    OUT.flush()


class Entry(gdb.Breakpoint):
    def stop(self):
        record()
        return False


gdb.execute("set pagination off")
gdb.execute("starti", to_string=True)
syms = [l.rstrip("\n").split(" ", 2) for l in open(os.environ["UPDATE_PATH_SYMS"])]
# A position-independent binary: nm's addresses plus where it was loaded.
main_nm = next(int(a, 16) for a, k, n in syms if n == "main")
base = int(gdb.parse_and_eval("(long)&main")) - main_nm
for addr, kind, name in syms:
    if kind not in "tT" or not ours(name):
        continue
    a = int(addr, 16) + base
    if a in NAMES:
        continue
    NAMES[a] = name
    Entry("*0x%x" % a, internal=True)
gdb.execute("continue")
