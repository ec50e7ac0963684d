#!/usr/bin/env bash
# Prints the stripped size of the agent for the four board targets against the
# budgets (board/size-budget.sh: armv7 <= 1.1 MiB, aarch64 musl <= 1.55 MiB), the ELF
# sections of one, and the largest contributors: per crate and per symbol from
# `nm --size-sort` of an unstripped armv7 musl build (same profile, strip off), plus cargo-bloat's per-crate
# table for the host build when cargo-bloat is installed (`cargo install cargo-bloat`).
# Env: SIZE_SKIP_BUILD=1 reuses target/board/*; SIZE_TARGETS to restrict; SIZE_CONTRIB_TARGET
#      (default armv7-unknown-linux-musleabihf) for the per-crate table.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${SIZE_TARGETS:-"armv7-unknown-linux-gnueabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-gnu aarch64-unknown-linux-musl"}
MiB=1048576
source board/size-budget.sh

# The profile's settings: the lines of [profile.release] up to the next blank line.
echo "== stripped sizes (release profile: $(sed -n '/^\[profile.release\]/,/^$/p' Cargo.toml | grep -v '^\[\|^$' | tr '\n' ' '))"
printf '%-34s %10s %9s %10s  %s\n' target bytes MiB budget verdict
for t in $TARGETS; do
  [ "${SIZE_SKIP_BUILD:-0}" = 1 ] || board/build.sh "$t" >/dev/null 2>&1 || { echo "$t: build failed"; continue; }
  f=target/board/$t/cybersensei-agent
  [ -f "$f" ] || { echo "$t: no binary"; continue; }
  s=$(stat -c %s "$f"); b=$(size_budget "$t")
  v="-"; [ "$b" -gt 0 ] && { [ "$s" -le "$b" ] && v=ok || v="OVER by $((s - b))"; }
  printf '%-34s %10s %9s %10s  %s\n' "$t" "$s" "$(awk "BEGIN{printf \"%.2f\", $s/$MiB}")" "$b" "$v"
done

T=${SIZE_CONTRIB_TARGET:-armv7-unknown-linux-musleabihf}
U=target/size-unstripped
echo
echo "== sections of the stripped $T binary"
size -A "target/board/$T/cybersensei-agent" 2>/dev/null | awk 'NR>2 && $2>4096 {printf "  %-20s %9d\n", $1, $2}' | sort -k2 -nr

echo
echo "== largest contributors ($T, unstripped build in $U; symbol sizes, so approximate)"
CARGO_TARGET_DIR=$PWD/$U BOARD_OUT=$PWD/$U/out CARGO_PROFILE_RELEASE_STRIP=false \
  board/build.sh $T >/dev/null 2>&1 || { echo "unstripped build failed"; exit 1; }
case "$T" in armv7-*) NM=arm-linux-gnueabihf-nm ;; *) NM=aarch64-linux-gnu-nm ;; esac
command -v "$NM" >/dev/null 2>&1 || NM="nm"
# Decimal sizes: mawk (Debian's awk) has no strtonum.
"$NM" --size-sort -S -C --radix=d "$U/out/cybersensei-agent" 2>/dev/null >"$U/nm.txt"
echo "-- per crate (first path segment of the demangled symbol)"
awk '{
  size = $2 + 0; name = "";
  for (i = 4; i <= NF; i++) name = name (i > 4 ? " " : "") $i;
  sub(/^<+/, "", name); sub(/^(impl |dyn )/, "", name);
  split(name, p, "::"); c = p[1];
  if (c !~ /^[A-Za-z_][A-Za-z0-9_]*$/ || index(name, "::") == 0) c = "[C/other: " ($3 ~ /[rR]/ ? "rodata" : ($3 ~ /[dDbB]/ ? "data" : "code")) "]";
  tot[c] += size; all += size
} END { for (c in tot) printf "  %-40s %9d  %5.1f%%\n", c, tot[c], 100 * tot[c] / all }' "$U/nm.txt" | sort -k2 -nr | head -20
echo "-- largest symbols"
tail -n 15 "$U/nm.txt" | awk '{ s = $2 + 0; $1 = $2 = ""; printf "  %9d %s\n", s, substr($0, 1, 110) }' | sort -nr

if command -v cargo-bloat >/dev/null 2>&1; then
  echo
  echo "== cargo bloat --crates (host x86_64 build, same profile; .text only)"
  CARGO_PROFILE_RELEASE_STRIP=false cargo bloat --release -p cybersensei-agent --bin cybersensei-agent --crates -n 15 2>/dev/null | sed 's/^/  /'
fi
