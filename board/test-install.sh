#!/usr/bin/env bash
# Tests board/install.sh into temp roots: layout, modes, owners, the default config
# accepted by the agent itself, the key installed private and never printed, an
# existing config kept, each init flavour; and `systemd-analyze verify` of the unit
# against the installed tree (when systemd-analyze exists).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${AGENT_BIN:-}" ]; then
  cargo build --locked -q -p cybersensei-agent
  source scripts/cargo-target-dir.sh
  AGENT_BIN=$(cargo_target_dir)/debug/cybersensei-agent
fi
export AGENT_BIN
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAILS=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
check_mode() { # path mode [owner]
  local m; m=$(stat -c %a "$1" 2>/dev/null || echo missing)
  if [ "$m" = "$2" ]; then ok "$1 mode $m"; else bad "$1 mode $m, want $2"; fi
  if [ "$(id -u)" = 0 ]; then
    [ "$(stat -c %U:%G "$1")" = root:root ] || bad "$1 not owned by root"
  fi
}

KEY='SECRET-KEY-0000+abc/def=='
printf '%s\n' "$KEY" >"$T/key.in"
# The vendor's update-signing public key (what `cybersensei-pack keygen` writes).
UPDATE_PUB='MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE='
printf '%s\n' "$UPDATE_PUB" >"$T/vendor.pub"
R=$T/root
out=$(DESTDIR=$R LICENSE_KEY_FILE=$T/key.in UPDATE_KEY_FILE=$T/vendor.pub bash board/install.sh 2>&1)
echo "$out" | sed 's/^/  | /'
case "$out" in *"$KEY"*) bad "key printed by install.sh" ;; *) ok "key not printed" ;; esac
check_mode "$R/usr/bin/cybersensei-agent" 755
cmp -s "$AGENT_BIN" "$R/usr/bin/cybersensei-agent" && ok "binary copied" || bad "binary differs"
check_mode "$R/etc/cybersensei" 755
check_mode "$R/etc/cybersensei/agent.json" 644
check_mode "$R/etc/cybersensei/license.key" 600
[ "$(cat "$R/etc/cybersensei/license.key")" = "$KEY" ] && ok "key content" || bad "key content"
check_mode "$R/etc/cybersensei/update-keys/factory.pub" 644
cmp -s "$T/vendor.pub" "$R/etc/cybersensei/update-keys/factory.pub" && ok "update key installed" || bad "update key content"
check_mode "$R/var/lib/cybersensei-agent" 755
check_mode "$R/opt/cybersensei/slots/a" 755
check_mode "$R/opt/cybersensei/slots/b" 755
check_mode "$R/etc/init.d/cybersensei-agent" 755
cmp -s board/init.d/cybersensei-agent "$R/etc/init.d/cybersensei-agent" && ok "SysV script installed" || bad "SysV script"
if compgen -G "$R/etc/cybersensei/.license*" >/dev/null; then bad "temp key file left"; else ok "no temp key file left"; fi

# The default config is valid for the agent and has the documented paths.
if o=$("$AGENT_BIN" -c "$R/etc/cybersensei/agent.json" config check 2>&1); then
  ok "default config accepted by 'config check'"
  for want in /var/lib/cybersensei-agent /opt/cybersensei /etc/cybersensei/license.key https://central.cybersensei.com; do
    grep -q "$want" <<<"$o" && ok "effective config has $want" || bad "effective config lacks $want"
  done
else
  bad "default config rejected: $o"
fi

# A second install keeps an edited config and replaces the binary atomically.
echo '{"backend": {"url": "https://other.example"}}' >"$R/etc/cybersensei/agent.json"
DESTDIR=$R bash board/install.sh >/dev/null
grep -q other.example "$R/etc/cybersensei/agent.json" && ok "existing config kept" || bad "config overwritten"
[ "$(cat "$R/etc/cybersensei/license.key")" = "$KEY" ] && ok "key kept on reinstall" || bad "key lost"

# Without a key: no placeholder.
R2=$T/root2
err=$(DESTDIR=$R2 bash board/install.sh 2>&1 >/dev/null)
[ ! -e "$R2/etc/cybersensei/license.key" ] && ok "no key placeholder without LICENSE_KEY_FILE" || bad "placeholder created"
# Without an update key: said loudly, and the box's config refuses every package.
grep -q "WARNING: no update-signing key" <<<"$err" && ok "missing update key warned" || bad "no warning: $err"
# The default config, pointed at the test roots, trusts the installed key directory.
for r in "$R" "$R2"; do
  sed -e "s#/etc/cybersensei/update-keys#$r/etc/cybersensei/update-keys#" \
    -e "s#/var/lib/cybersensei-agent#$r/var/lib/cybersensei-agent#" \
    -e "s#/opt/cybersensei#$r/opt/cybersensei#" board/etc/agent.json >"$T/agent-$(basename "$r").json"
done
o=$("$AGENT_BIN" -c "$T/agent-root.json" status --json)
grep -q '"signatures":"required"' <<<"$o" && grep -q '"trustedKeys":\["' <<<"$o" &&
  ok "default config: signatures required, factory key trusted" || bad "status with the factory key: $o"
o=$("$AGENT_BIN" -c "$T/agent-root2.json" status --json)
grep -q 'every update package is refused' <<<"$o" && ok "default config without a key: every package refused, said in status" || bad "status without key: $o"

R3=$T/root3
DESTDIR=$R3 INIT=openrc bash board/install.sh >/dev/null
head -1 "$R3/etc/init.d/cybersensei-agent" | grep -q openrc-run && ok "OpenRC script installed" || bad "OpenRC script"
sh -n "$R3/etc/init.d/cybersensei-agent" && ok "OpenRC script parses" || bad "OpenRC script syntax"

R4=$T/root4
DESTDIR=$R4 INIT=systemd bash board/install.sh >/dev/null
check_mode "$R4/lib/systemd/system/cybersensei-agent.service" 644
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify resolves commands and dependencies inside --root: give it a shell, kill
  # and the host's unit library.
  mkdir -p "$R4/bin" "$R4/lib/systemd"
  cp /bin/sh /bin/kill "$R4/bin/"
  cp -a /lib/systemd/system/. "$R4/lib/systemd/system/" 2>/dev/null || true
  cp board/systemd/cybersensei-agent.service "$R4/lib/systemd/system/"
  if o=$(systemd-analyze verify --root="$R4" cybersensei-agent.service 2>&1) && [ -z "$o" ]; then
    ok "systemd-analyze verify: clean"
  else
    bad "systemd-analyze verify: $o"
  fi
else
  echo "  skip systemd-analyze not installed"
fi

# The factory version: recorded by default, set by FACTORY_VERSION, kept on a
# reinstall without it, refused when not a version, and reported by the agent.
fv() { cat "$1/opt/cybersensei/factory-version" 2>/dev/null || echo missing; }
[ "$(fv "$R2")" = "$(head -n1 board/etc/factory-version)" ] && ok "default factory version recorded" || bad "factory version $(fv "$R2")"
check_mode "$R2/opt/cybersensei/factory-version" 644
R5=$T/root5
DESTDIR=$R5 FACTORY_VERSION=2.3.4 bash board/install.sh >/dev/null
[ "$(fv "$R5")" = 2.3.4 ] && ok "FACTORY_VERSION=2.3.4 recorded" || bad "factory version $(fv "$R5")"
DESTDIR=$R5 bash board/install.sh >/dev/null
[ "$(fv "$R5")" = 2.3.4 ] && ok "factory version kept on reinstall" || bad "factory version $(fv "$R5") after reinstall"
hv() { cat "$1/var/lib/cybersensei-agent/update/highest-version" 2>/dev/null || echo missing; }
[ "$(hv "$R5")" = 2.3.4 ] && ok "highest-version seeded with the factory version" || bad "highest-version $(hv "$R5")"
check_mode "$R5/var/lib/cybersensei-agent/update" 700
if DESTDIR=$R5 FACTORY_VERSION='1.0; rm -rf /' bash board/install.sh >/dev/null 2>&1; then
  bad "a malformed FACTORY_VERSION accepted"
else
  [ "$(fv "$R5")" = 2.3.4 ] && ok "malformed FACTORY_VERSION refused, record kept" || bad "record changed"
fi
printf '{"state_dir": "%s", "install": {"root": "%s"}, "license": {"key_file": "%s"}}\n' \
  "$R5/var/lib/cybersensei-agent" "$R5/opt/cybersensei" "$T/key.in" >"$T/fv.json"
st=$("$AGENT_BIN" -c "$T/fv.json" status --json 2>/dev/null || true)
if grep -q '"version":"2.3.4"' <<<"$st"; then ok "agent reports the factory version 2.3.4"; else bad "agent reports: $st"; fi

if [ "$FAILS" -gt 0 ]; then echo "test-install: $FAILS failure(s)"; exit 1; fi
echo "test-install: all passed"
