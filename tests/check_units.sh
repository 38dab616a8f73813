#!/bin/sh
# The systemd units: systemd-analyze verify is clean, and
# systemd-analyze security --offline=true rates the service 1.2 or lower.
set -eu
top_srcdir=${top_srcdir:-$(dirname "$0")/..}
top_builddir=${top_builddir:-.}
if ! command -v systemd-analyze >/dev/null; then
        echo "systemd-analyze is missing (apt-get install systemd)" >&2
        exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The built units, with the binary at its build-tree path (verify checks
# that ExecStart= is executable).
bin=$(cd "$top_builddir/src" && pwd)/slhookd
sed "s|/[^ ]*/slhookd -c|$bin -c|" "$top_builddir/systemd/slhookd.service" > "$dir/slhookd.service"
cp "$top_srcdir/systemd/slhookd.socket" "$dir/slhookd.socket"
grep -q "^ExecStart=$bin " "$dir/slhookd.service"
out=$(cd "$dir" && systemd-analyze verify --man=no slhookd.socket slhookd.service 2>&1) || {
        echo "systemd-analyze verify failed: $out" >&2
        exit 1
}
if [ -n "$out" ]; then
        echo "systemd-analyze verify: $out" >&2
        exit 1
fi
score=$(cd "$dir" && systemd-analyze security --offline=true slhookd.service 2>&1 |
        sed -n 's/.*Overall exposure level for slhookd.service: \([0-9.]*\).*/\1/p')
echo "exposure: $score"
[ -n "$score" ] || { echo "no exposure score" >&2; exit 1; }
awk -v s="$score" 'BEGIN { exit !(s <= 1.2) }' || { echo "exposure $score is above 1.2" >&2; exit 1; }
grep -q '^ListenStream=443$' "$dir/slhookd.socket"
# A refused configuration fails `systemctl reload`: the check runs first.
[ "$(sed -n 's/^ExecReload=//p' "$dir/slhookd.service" | head -1 | sed 's/.* //')" = --check ]
sed -n 's/^ExecReload=//p' "$dir/slhookd.service" | sed -n 2p | grep -q 'kill -HUP \$MAINPID'
grep -q '^RestartPreventExitStatus=78$' "$dir/slhookd.service"
grep -q '^LoadCredential=tls-key:/' "$dir/slhookd.service"
# The API key file is optional: an empty credential when it is absent.
grep -q '^LoadCredential=api-key:/' "$dir/slhookd.service"
grep -q '^SetCredential=api-key:\\n$' "$dir/slhookd.service"
nofile=$(sed -n 's/^LimitNOFILE=//p' "$dir/slhookd.service")
[ "${nofile:-0}" -ge 1088 ] || { echo "LimitNOFILE=$nofile does not fit max_connections = 1024" >&2; exit 1; }
grep -q '^IPAddressAllow=142.0.176.0/20 52.152.150.178$' "$dir/slhookd.socket"
grep -q '^IPAddressDeny=any$' "$dir/slhookd.socket"
# The journal catalog: journalctl compiles it, and every MESSAGE_ID slhookd
# logs (src/log.h) is explained there.
mkdir -p "$dir/root/usr/lib/systemd/catalog" "$dir/root/var/lib/systemd/catalog"
cp "$top_srcdir/systemd/slhookd.catalog" "$dir/root/usr/lib/systemd/catalog/"
journalctl --root="$dir/root" --update-catalog
journalctl --root="$dir/root" --list-catalog > "$dir/catalog"
ids=$(sed -n 's/^#define LOG_MID_[A-Z]* *"\([0-9a-f]*\)".*/\1/p' "$top_srcdir/src/log.h")
[ -n "$ids" ] || { echo "no MESSAGE_ID in src/log.h" >&2; exit 1; }
for id in $ids; do
        grep -q "^$id slhookd: " "$dir/catalog" || { echo "MESSAGE_ID $id is not in the catalog" >&2; exit 1; }
done
echo "catalog: $(wc -l < "$dir/catalog") entries"
