#!/usr/bin/env bash
# Follows `update` call by call (issue 24): runs a real update against the simulator
# under gdb, records every call into the agent's own functions made under
# `update::update_now` (scripts/update_path.py), and counts, in call order:
#   visits   calls that enter another module than their caller's;
#   back     visits to a module entered before and left since, not on the stack
#            (a second trip into `status`);
#   up       calls by name into a module already on the stack, not the caller's:
#            a lower module calling up into one it was called from (callbacks,
#            closures and trait methods handed down, are not counted);
#   modules  distinct modules visited.
# Counted over every module of src/, and over src/update/ and status only; over
# every call, and over each call once (a (caller, callee) pair at its first
# occurrence: the path as a reader follows the code, not as a loop repeats it).
#
# The orchestration view (issue 24's "followed call by call from update_now": the
# modules a reader visits reading the code that sequences the steps, not every
# helper those steps call):
#   - only the calls made by the orchestrating modules, `update` (mod.rs),
#     `update::pipeline`, `update::driver` and `update::recover`: a call counts when
#     its caller and every agent frame above it, up to `update_now`, are in these
#     modules (a closure a step runs, like the download's progress, is the step's
#     business; "caller only": counted as well, for comparison);
#   - callees in src/update/ and status (the scope of the second view), not the
#     orchestrating module the call is made from, and not implementations of a
#     standard trait (`<X as core::cmp::PartialEq>::eq`: a derived `==` is not a
#     step);
#   - collapsed to module transitions (two calls in a row into one module are one
#     visit), over every call and over each (caller, callee) pair once;
#   - visits, distinct modules, and "back": visits to a module visited before with
#     another module in between (a return to a module already left).
#   scripts/update-path.sh [AGENT_BINARY]   (default: a debug build of this tree)
# Needs gdb. The path: a fresh box (no slot), the central profile, a small full
# package with version.json, healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-target-dir.sh
# Its own target directory: a build here has no `test-seams`, and overwriting the tests'
# debug binary made the kill tests of a suite running beside it fail.
TARGET_DIR=$(cargo_target_dir)/update-path
CARGO_TARGET_DIR=$TARGET_DIR cargo build -q -p cybersensei-agent -p cybersensei-sim
AGENT=${1:-$TARGET_DIR/debug/cybersensei-agent}
SIM=$TARGET_DIR/debug/cybersensei-sim
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

KEY='PATH-A1B2C3D4'
mkdir -p "$work/pkg/app" "$work/pkg/bin"
echo "app 1.2.0" > "$work/pkg/app/README"
printf '#!/bin/sh\necho healthy\n' > "$work/pkg/bin/health"; chmod +x "$work/pkg/bin/health"
echo "1.2.0" > "$work/pkg/VERSION"
printf '{"version": "1.2.0", "kind": "full", "changelog": "fixes", "requiredNodeVersion": "0.0.0"}\n' > "$work/pkg/version.json"
(cd "$work/pkg" && python3 - <<'PY'
import zipfile, os
with zipfile.ZipFile("../update-1.2.0.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk("."):
        for f in files:
            p = os.path.join(root, f)[2:]
            info = zipfile.ZipInfo(p); info.external_attr = (os.stat(p).st_mode & 0o777) << 16
            z.writestr(info, open(p, "rb").read())
PY
)
"$SIM" --profile central --port 0 --license "$KEY=valid" --quiet \
  --update "1.2.0=$work/update-1.2.0.zip" > "$work/sim.out" 2> "$work/sim.err" &
sim_pid=$!
for _ in $(seq 50); do grep -q '^URL ' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^URL //p' "$work/sim.out" | head -1)
[ -n "$URL" ] || { echo "simulator did not start"; cat "$work/sim.err"; exit 1; }
printf '%s\n' "$KEY" > "$work/license.key"; chmod 600 "$work/license.key"
cat > "$work/agent.json" <<JSON
{
  "backend": {"url": "$URL", "timeout": 10, "retry_attempts": 1, "retry_delay": 1,
              "allow_http": true},
  "license": {"key_file": "$work/license.key"},
  "install": {"root": "$work/opt"},
  "services": {"health": ["$work/opt/current/bin/health"], "health_timeout": 10},
  "state_dir": "$work/state"
}
JSON
"$AGENT" -c "$work/agent.json" validate > /dev/null
nm -C --defined-only "$AGENT" > "$work/syms"
UPDATE_PATH_OUT="$work/calls" UPDATE_PATH_SYMS="$work/syms" gdb -q -batch -x scripts/update_path.py \
  --args "$AGENT" -c "$work/agent.json" update > "$work/gdb.out" 2>&1 || true
grep -q '^CALL' "$work/calls" || { echo "no calls recorded"; tail -20 "$work/gdb.out"; exit 1; }
[ -n "${UPDATE_PATH_KEEP:-}" ] && cp "$work/calls" "$UPDATE_PATH_KEEP"
python3 - "$work/calls" <<'PY'
import sys
calls = []
for l in open(sys.argv[1]):
    if l.startswith("CALL "):
        mod, fn, stack, caller = l.rstrip("\n").split("\t")
        calls.append((mod[5:], fn, [m for m in stack.split("|") if m], caller))
def count(keep, once):
    visits = returns = upcalls = 0
    seen, seq, ups, edges = set(), [], [], set()
    for mod, fn, stack, caller_fn in calls:
        # `once`: each call (calling function, function called) counted at its
        # first occurrence only: the path as a reader follows the code.
        key = (caller_fn, fn.split("::{")[0])
        if once and key in edges:
            continue
        edges.add(key)
        stack = [m for m in stack if keep(m)]
        if not keep(mod):
            continue
        caller = stack[-1] if stack else None
        if mod == caller:
            continue
        visits += 1
        if mod in stack:
            # By name: a lower module calls a function of its caller's module.
            # Else a callback: a closure or trait method handed down.
            if "closure" not in fn and "<" not in fn:
                upcalls += 1
                ups.append(f"{caller} -> {fn}")
        elif mod in seen:
            returns += 1
        seen.add(mod)
        seq.append(mod)
    return visits, returns, upcalls, len(seen), seq, ups
for label, keep in [("all of src/", lambda m: True),
                    ("src/update/ + status", lambda m: m.startswith("update") or m == "status")]:
  for once in (False, True):
    v, r, u, n, seq, ups = count(keep, once)
    how = "each call once" if once else "every call"
    print(f"{label}, {how}: {n} modules, {v} visits: {r} back into a module left earlier, {u} up into a module on the stack by name")
    for x in sorted(set(ups)):
        print(f"  up: {x} (x{ups.count(x)})")
    if once and label.startswith("src/update"):
        print("  path: " + " > ".join(seq))

# The orchestration view (header).
ORCH = {"update", "update::pipeline", "update::driver", "update::recover"}
def std_trait(fn):
    return any(f" as {c}::" in fn for c in ("core", "alloc", "std", "serde"))
def orchestration(once, chain):
    seq, edges = [], set()
    for mod, fn, stack, caller_fn in calls:
        if not stack or (chain and not all(m in ORCH for m in stack)) or stack[-1] not in ORCH:
            continue
        if std_trait(fn) or not (mod.startswith("update") or mod == "status") or mod == stack[-1]:
            continue
        key = (caller_fn, fn.split("::{")[0])
        if once and key in edges:
            continue
        edges.add(key)
        if not seq or seq[-1] != mod:
            seq.append(mod)
    seen, back, shown = set(), 0, []
    for m in seq:
        back += m in seen
        shown.append(("*" if m in seen else "") + m.removeprefix("update::"))
        seen.add(m)
    return len(seen), len(seq), back, shown
for chain in (True, False):
    for once in (False, True):
        n, v, b, shown = orchestration(once, chain)
        how = "each call once" if once else "every call"
        who = "" if chain else " (caller only)"
        print(f"orchestration{who}, {how}: {n} modules, {v} visits: {b} back into a module already left")
        if once and chain:
            print("  path (*: back): " + " > ".join(shown))
PY
