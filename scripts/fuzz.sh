#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints executions and findings.
#   scripts/fuzz.sh [TARGET...]      FUZZ_SECONDS per target (default 60)
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`); not part of CI's test run.
# Seeds come from fuzz/seeds/TARGET (checked in); the growing corpus stays in
# fuzz/corpus (ignored by git). A crash leaves fuzz/artifacts/TARGET/crash-*: turn it
# into a regression test in tests/fuzz_regressions.rs, then fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${FUZZ_SECONDS:-60}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config protocol dates zip_package)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
rc=0
printf '%-12s %10s %8s %6s  %s\n' target execs exec/s cov result
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  if cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$SECS" \
    -max_len=65536 -rss_limit_mb=512 >"$log" 2>&1; then
    res=ok
  else
    res="CRASH (see fuzz/artifacts/$t)"
    rc=1
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  speed=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' <<<"$last")
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  printf '%-12s %10s %8s %6s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$res"
  [ "$res" = ok ] || tail -30 "$log"
  rm -f "$log"
done
exit $rc
