#!/usr/bin/env bash
# Installs, idempotently, what the board scripts need on a fresh Debian 12 machine:
# rustup targets (+ nightly rust-src for armv7 musl), zig and cargo-zigbuild (PyPI),
# Debian cross gcc (alternative linker, sysroots for qemu-user -L), qemu-user,
# qemu-system-arm, busybox, cpio, e2fsprogs (boot test), systemd (systemd-analyze).
# BOARD_SETUP_MINIMAL=1 skips the boot-test packages.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-aarch64 || need_apt+=(qemu-user)
have arm-linux-gnueabihf-gcc || need_apt+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
have aarch64-linux-gnu-gcc || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
have start-stop-daemon || need_apt+=(dpkg)
have systemd-analyze || need_apt+=(systemd)
have busybox || need_apt+=(busybox-static)
have file || need_apt+=(file)
have strace || need_apt+=(strace)
if [ "${BOARD_SETUP_MINIMAL:-0}" != 1 ]; then
  have qemu-system-aarch64 || need_apt+=(qemu-system-arm)
  have cpio || need_apt+=(cpio)
  have python3 || need_apt+=(python3)
  have mke2fs || need_apt+=(e2fsprogs)
  have dpkg-deb || need_apt+=(dpkg)
fi
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
# The boot test downloads Debian's arm64 kernel and busybox-static:arm64 debs.
if [ "${BOARD_SETUP_MINIMAL:-0}" != 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  need_update=1
fi
if [ ${#need_apt[@]} -gt 0 ] || [ -n "${need_update:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  [ ${#need_apt[@]} -eq 0 ] || $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

installed=$(rustup target list --installed)
for t in armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu aarch64-unknown-linux-musl; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
# armv7 musl: no prebuilt std (rustup 404), built from source with nightly.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' ||
  rustup component add rust-src --toolchain nightly

if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || $SUDO apt-get install -y -q python3-pip
  # Debian's own python refuses system-wide pip installs (PEP 668): user install then.
  python3 -m pip install --quiet cargo-zigbuild ziglang ||
    python3 -m pip install --quiet --user --break-system-packages cargo-zigbuild ziglang
fi
command -v cargo-zigbuild >/dev/null 2>&1 || {
  # pip may have put the scripts in ~/.local/bin (user install) off PATH
  for d in "$HOME/.local/bin" "$HOME/.pyenv/shims"; do [ -x "$d/cargo-zigbuild" ] && echo "ci-setup: cargo-zigbuild in $d (board scripts add it to PATH)"; done
}
echo "ci-setup: board tools ready"
