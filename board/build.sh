#!/usr/bin/env bash
# Cross-builds the agent (and, with --sim, the simulator) for an ARM board without
# Docker, and leaves stripped binaries in target/board/TARGET/.
#
#   board/build.sh TARGET [--sim] [--no-agent]
#
# TARGET: armv7-unknown-linux-gnueabihf | aarch64-unknown-linux-gnu |
#         armv7-unknown-linux-musleabihf | aarch64-unknown-linux-musl
#         (x86_64-unknown-linux-musl works too, for a static host build)
#
# How each target is linked (ring compiles C, so a C cross compiler is always needed):
#   *-musl*   cargo-zigbuild: zig cc supplies musl, the CRT and the linker; the result
#             is a static executable. armv7 musl has no prebuilt std from rustup, so it
#             is built with nightly -Zbuild-std and link-self-contained=no (zig links
#             its own musl CRT instead of the missing rustup one).
#   *-gnu*    BOARD_LINKER=zig (default): cargo-zigbuild against a glibc baseline
#             (GLIBC, default 2.17), so the binary runs on any box with glibc >= 2.17.
#             BOARD_LINKER=gcc: Debian's cross gcc (gcc-arm-linux-gnueabihf /
#             gcc-aarch64-linux-gnu); the result then needs the build host's glibc
#             (2.34+ on Debian 12).
# Env: BOARD_RUSTFLAGS (extra rustc flags for the target), BOARD_CARGO_ARGS (extra
#      cargo args, e.g. -Zbuild-std with NIGHTLY), BOARD_LINKER, GLIBC, NIGHTLY (toolchain for build-std, default nightly),
#      BOARD_PANIC=immediate-abort (default, nightly) | abort (stable where possible),
#      BUILD_STD=1 (rebuild std from source with nightly, any target),
#      BOARD_OUT (output dir, default target/board/TARGET), CARGO_PROFILE_RELEASE_*
#      (profile overrides, used by board/profile-matrix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# The agent's "clock not set" floor is its build date: the commit's, so that two
# builds of one commit are identical.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
# `--version` names the commit (and the build date above); `-dirty` when the tree had
# uncommitted changes. Same mechanism: read by the agent at compile time.
if [ -z "${CYBERSENSEI_COMMIT:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  CYBERSENSEI_COMMIT=$(git rev-parse --short=12 HEAD)
  git diff --quiet HEAD -- 2>/dev/null || CYBERSENSEI_COMMIT=$CYBERSENSEI_COMMIT-dirty
  export CYBERSENSEI_COMMIT
fi
# Where cargo writes (CARGO_TARGET_DIR, .cargo/config.toml): asked, not assumed.
source scripts/cargo-target-dir.sh
TARGET_DIR=$(cargo_target_dir)

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
TARGET=$1; shift
SIM=0; AGENT=1
for a in "$@"; do
  case "$a" in
    --sim) SIM=1 ;;
    --no-agent) AGENT=0 ;;
    *) usage ;;
  esac
done

BOARD_LINKER=${BOARD_LINKER:-zig}
GLIBC=${GLIBC:-2.17}
NIGHTLY=${NIGHTLY:-nightly}
OUT=${BOARD_OUT:-target/board/$TARGET}

case "$TARGET" in
  armv7-unknown-linux-gnueabihf) GCC=arm-linux-gnueabihf ;;
  aarch64-unknown-linux-gnu) GCC=aarch64-linux-gnu ;;
  armv7-unknown-linux-musleabihf | aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) GCC= ;;
  *) echo "build.sh: unsupported target $TARGET" >&2; exit 2 ;;
esac

# cargo-zigbuild and zig come from PyPI (board/ci-setup.sh: a venv); make them visible
# (the venv's python3 first, so that cargo-zigbuild finds its `python3 -m ziglang`).
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
  for d in "${BOARD_TOOLS_VENV:-$HOME/.local/share/cybersensei-board/venv}/bin" "$HOME/.local/bin" "$HOME/.pyenv/shims"; do
    [ -x "$d/cargo-zigbuild" ] && PATH="$d:$PATH"
  done
fi

pkgs=()
[ "$AGENT" = 1 ] && pkgs+=(-p cybersensei-agent)
[ "$SIM" = 1 ] && pkgs+=(-p cybersensei-sim)
[ ${#pkgs[@]} -gt 0 ] || usage

upper=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
cargo_target=$TARGET
cmd=(cargo)
# Size: by default std is rebuilt (nightly) with the release profile and panics abort
# immediately (no panic message/formatting machinery): about -280 KiB per binary,
# part of what keeps armv7 under 1.1 MiB and aarch64 musl under 1.55 MiB. BOARD_PANIC=abort
# builds with stable and the prebuilt std instead (except armv7 musl, see above).
BOARD_PANIC=${BOARD_PANIC:-immediate-abort}
BUILD_STD=${BUILD_STD:-0}
[ "$TARGET" = armv7-unknown-linux-musleabihf ] && BUILD_STD=1
if [ "$BOARD_PANIC" = immediate-abort ]; then
  BUILD_STD=1
  export CARGO_PROFILE_RELEASE_PANIC=immediate-abort
  BOARD_CARGO_ARGS="-Zpanic-immediate-abort ${BOARD_CARGO_ARGS:-}"
  # No unwind tables (.eh_frame and its index; .ARM.exidx on armv7), std's too: with
  # panics that abort at once nothing unwinds or prints a backtrace, so they were
  # dead weight (−217 kB on aarch64 musl, bytes in docs/board.md). Only a debugger's
  # backtrace on the board loses them (the shipped binary is stripped anyway).
  BOARD_RUSTFLAGS="-C force-unwind-tables=no ${BOARD_RUSTFLAGS:-}"
elif [ "$BOARD_PANIC" != abort ]; then
  echo "build.sh: BOARD_PANIC must be immediate-abort or abort" >&2; exit 2
fi
case "$TARGET" in
  armv7-unknown-linux-musleabihf)
    # No rustup std for this target: build std from rust-src. The CRT objects rustc
    # would pass (crt1.o, crti.o, ...) do not exist either; let zig provide them.
    cmd=(cargo "+$NIGHTLY" zigbuild -Zbuild-std=std,panic_abort)
    BOARD_RUSTFLAGS="-C link-self-contained=no ${BOARD_RUSTFLAGS:-}"
    ;;
  *-musl)
    cmd=(cargo zigbuild)
    ;;
  *)
    if [ "$BOARD_LINKER" = zig ]; then
      cmd=(cargo zigbuild)
      cargo_target=$TARGET.$GLIBC
    elif [ "$BOARD_LINKER" = gcc ]; then
      cmd=(cargo build)
      export "CARGO_TARGET_${upper}_LINKER=$GCC-gcc"
      export "CC_${TARGET//-/_}=$GCC-gcc" "AR_${TARGET//-/_}=$GCC-ar"
    else
      echo "build.sh: BOARD_LINKER must be zig or gcc" >&2; exit 2
    fi
    ;;
esac

if [ "$BUILD_STD" = 1 ] && [ "${cmd[1]}" != "+$NIGHTLY" ]; then
  # std rebuilt from source with the release profile (BUILD_STD=1 on any target)
  cmd=(cargo "+$NIGHTLY" "${cmd[@]:1}" -Zbuild-std=std,panic_abort)
  case "$TARGET" in *-musl*) BOARD_RUSTFLAGS="-C link-self-contained=no ${BOARD_RUSTFLAGS:-}" ;; esac
fi
if [ "$BUILD_STD" = 1 ]; then
  # Nightly size flags, std rebuilt anyway (bytes in docs/board.md): std's
  # optimize_for_size algorithms (smaller sort and formatting code, same results);
  # no file:line:column in panic locations (nothing prints them: panics abort at
  # once); and -Zfmt-debug=shallow: a #[derive(Debug)] prints only the type or
  # variant name. So no message or log line may rely on a derived Debug (`{:?}` of
  # a str, a path, a number or a Duration is unaffected: hand-written impls); use
  # Display or format the fields (docs/board.md, "Size mode").
  cmd+=(-Zbuild-std-features=optimize_for_size)
  BOARD_RUSTFLAGS="-Zlocation-detail=none -Zfmt-debug=shallow ${BOARD_RUSTFLAGS:-}"
  # armv7: Thumb-2, std included (as Debian's armhf compiles its C): a quarter smaller
  # than ARM code, same speed class on Cortex-A; ring's assembly keeps its own mode.
  # rustc calls the feature unstable (a warning), like the -Z flags above.
  case "$TARGET" in armv7-*) BOARD_RUSTFLAGS="-C target-feature=+thumb-mode $BOARD_RUSTFLAGS" ;; esac
  # std is rebuilt from source, so the nightly sysroot has no lib/ for this target
  # (no rust-std installed, none exists for armv7 musl); rustc still passes it to the
  # linker with -L, and every link printed "warning: linker stderr: unable to open
  # library directory …/rustlib/$TARGET/lib: FileNotFound". The empty directories
  # (what `rustup target add` would create, without a std in them) answer it.
  sysroot=$(rustc "+$NIGHTLY" --print sysroot)
  mkdir -p "$sysroot/lib/rustlib/$TARGET/lib/self-contained" 2>/dev/null || true
fi
[ -n "${BOARD_RUSTFLAGS:-}" ] && export "CARGO_TARGET_${upper}_RUSTFLAGS=$BOARD_RUSTFLAGS"
[ -n "${BOARD_CARGO_ARGS:-}" ] && cmd+=($BOARD_CARGO_ARGS)
echo "build.sh: ${cmd[*]} --release --locked --target $cargo_target ${pkgs[*]}" >&2
"${cmd[@]}" --release --locked --target "$cargo_target" "${pkgs[@]}"

mkdir -p "$OUT"
# The release profile strips (strip = true), so the copy is the shipped binary.
for bin in cybersensei-agent cybersensei-sim; do
  if [ "$bin" = cybersensei-agent ] && [ "$AGENT" = 0 ]; then continue; fi
  if [ "$bin" = cybersensei-sim ] && [ "$SIM" = 0 ]; then continue; fi
  cp "$TARGET_DIR/$TARGET/release/$bin" "$OUT/$bin.tmp"
  mv "$OUT/$bin.tmp" "$OUT/$bin"
  echo "$OUT/$bin $(stat -c %s "$OUT/$bin") bytes"
done
