#!/usr/bin/env bash
# Lays out the agent on a box (or into DESTDIR for an image / a test):
#   /usr/bin/cybersensei-agent                 factory agent (0755)
#   /etc/cybersensei/agent.json                default config (0644; kept if present)
#   /etc/cybersensei/license.key               only with LICENSE_KEY_FILE: 0600 root
#   /etc/cybersensei/update-keys/factory.pub   the vendor's update-signing public key
#                                              (UPDATE_KEY_FILE; 0644): the default
#                                              config trusts this directory, and refuses
#                                              every update package while it is empty
#   /var/lib/cybersensei-agent/                state_dir (0755)
#   /var/lib/cybersensei-agent/update/highest-version
#                                              the downgrade guard's record, seeded
#                                              with the factory version (0644)
#   /opt/cybersensei/slots/{a,b}/              install.root and its slots (0755)
#   /opt/cybersensei/factory-version           the version the box ships with (0644):
#                                              the agent reports it until a slot is active
#   init: /etc/init.d/cybersensei-agent (INIT=sysv, default) | the OpenRC script
#         (INIT=openrc) | /lib/systemd/system/cybersensei-agent.service (INIT=systemd)
#
#   DESTDIR=/tmp/root AGENT_BIN=target/board/aarch64-unknown-linux-musl/cybersensei-agent \
#     board/install.sh
# Env: DESTDIR (default /), AGENT_BIN (default target/board/$TARGET/cybersensei-agent),
#      TARGET (default aarch64-unknown-linux-musl), INIT, CONFIG_SRC (default
#      board/etc/agent.json), LICENSE_KEY_FILE (a file holding the key to install),
#      FACTORY_VERSION (the CyberSensei version the image holds, e.g. 1.0.0; when unset
#      an existing record is kept, else board/etc/factory-version is recorded).
#      UPDATE_KEY_FILE (the vendor's public key, `cybersensei-pack keygen` NAME.pub).
# No key placeholder is created: an empty key file would look provisioned and fail
# later; the agent reports a missing key clearly, and `cybersensei-agent set-key`
# creates the file atomically with mode 0600.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
TARGET=${TARGET:-aarch64-unknown-linux-musl}
AGENT_BIN=${AGENT_BIN:-$HERE/../target/board/$TARGET/cybersensei-agent}
INIT=${INIT:-sysv}
CONFIG_SRC=${CONFIG_SRC:-$HERE/etc/agent.json}

[ -x "$AGENT_BIN" ] || { echo "install.sh: no agent binary at $AGENT_BIN (board/build.sh TARGET)" >&2; exit 1; }
owner=()
[ "$(id -u)" = 0 ] && owner=(-o root -g root)

d() { install -d -m "$1" "${owner[@]}" "$DESTDIR$2"; }
d 0755 /usr/bin
d 0755 /etc/cybersensei
d 0755 /etc/cybersensei/update-keys
d 0755 /var/lib/cybersensei-agent
d 0755 /opt/cybersensei
d 0755 /opt/cybersensei/slots
d 0755 /opt/cybersensei/slots/a
d 0755 /opt/cybersensei/slots/b

install -m 0755 "${owner[@]}" "$AGENT_BIN" "$DESTDIR/usr/bin/cybersensei-agent.new"
mv -f "$DESTDIR/usr/bin/cybersensei-agent.new" "$DESTDIR/usr/bin/cybersensei-agent"

# The factory version: without it a fresh box reports 0.0.0 and the backend refuses
# every update that requires a node version.
fv_file=$DESTDIR/opt/cybersensei/factory-version
if [ -n "${FACTORY_VERSION:-}" ] || [ ! -e "$fv_file" ]; then
  fv=${FACTORY_VERSION:-$(head -n1 "$HERE/etc/factory-version")}
  if ! [[ "$fv" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$ ]]; then
    echo "install.sh: FACTORY_VERSION must be a version like 1.0.0, got '$fv'" >&2
    exit 2
  fi
  printf '%s\n' "$fv" >"$fv_file.tmp"
  chmod 0644 "$fv_file.tmp"
  [ "$(id -u)" = 0 ] && chown root:root "$fv_file.tmp"
  mv -f "$fv_file.tmp" "$fv_file"
  echo "install.sh: factory version $fv recorded"
fi
# The downgrade guard's durable record starts at the factory version (the agent
# also counts factory-version; this file outlives a slot record dropped later).
hv_file=$DESTDIR/var/lib/cybersensei-agent/update/highest-version
if [ ! -e "$hv_file" ]; then
  d 0700 /var/lib/cybersensei-agent/update
  head -n1 "$fv_file" >"$hv_file.tmp"
  chmod 0644 "$hv_file.tmp"
  mv -f "$hv_file.tmp" "$hv_file"
fi

if [ -e "$DESTDIR/etc/cybersensei/agent.json" ]; then
  echo "install.sh: keeping existing /etc/cybersensei/agent.json"
else
  install -m 0644 "${owner[@]}" "$CONFIG_SRC" "$DESTDIR/etc/cybersensei/agent.json"
fi

if [ -n "${LICENSE_KEY_FILE:-}" ]; then
  # Created private from the first byte (umask), then renamed into place.
  (umask 077 && cp "$LICENSE_KEY_FILE" "$DESTDIR/etc/cybersensei/.license.key.tmp")
  chmod 0600 "$DESTDIR/etc/cybersensei/.license.key.tmp"
  [ "$(id -u)" = 0 ] && chown root:root "$DESTDIR/etc/cybersensei/.license.key.tmp"
  mv -f "$DESTDIR/etc/cybersensei/.license.key.tmp" "$DESTDIR/etc/cybersensei/license.key"
  echo "install.sh: license key installed (0600)"
elif [ ! -e "$DESTDIR/etc/cybersensei/license.key" ]; then
  echo "install.sh: no license key yet: run 'cybersensei-agent set-key' on the box"
fi

if [ -n "${UPDATE_KEY_FILE:-}" ]; then
  # A public key: readable by all, written by root only.
  install -m 0644 "${owner[@]}" "$UPDATE_KEY_FILE" "$DESTDIR/etc/cybersensei/update-keys/.factory.pub.tmp"
  mv -f "$DESTDIR/etc/cybersensei/update-keys/.factory.pub.tmp" "$DESTDIR/etc/cybersensei/update-keys/factory.pub"
  echo "install.sh: update-signing key installed (/etc/cybersensei/update-keys/factory.pub)"
elif ! compgen -G "$DESTDIR/etc/cybersensei/update-keys/*.pub" >/dev/null; then
  echo "install.sh: WARNING: no update-signing key (UPDATE_KEY_FILE): this box refuses every update package until one is put in /etc/cybersensei/update-keys/" >&2
fi

case "$INIT" in
  sysv)
    d 0755 /etc/init.d
    install -m 0755 "${owner[@]}" "$HERE/init.d/cybersensei-agent" "$DESTDIR/etc/init.d/cybersensei-agent"
    ;;
  openrc)
    d 0755 /etc/init.d
    install -m 0755 "${owner[@]}" "$HERE/openrc/cybersensei-agent" "$DESTDIR/etc/init.d/cybersensei-agent"
    ;;
  systemd)
    d 0755 /lib/systemd/system
    install -m 0644 "${owner[@]}" "$HERE/systemd/cybersensei-agent.service" "$DESTDIR/lib/systemd/system/cybersensei-agent.service"
    ;;
  none) ;;
  *) echo "install.sh: INIT must be sysv, openrc, systemd or none" >&2; exit 2 ;;
esac
echo "install.sh: installed into ${DESTDIR:-/} (init: $INIT)"
