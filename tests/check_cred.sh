#!/bin/sh
# What the unit's DynamicUser= meets: a root-only (0600) TLS key. As an
# unprivileged uid, `slhookd --check` cannot read it (exit 78, the file and
# "Permission denied" named), and passes with the key as the systemd
# credential tls-key; a max_connections the descriptor limit cannot hold is
# refused; a bad flag is a usage error (64). Needs root (to own the key and
# change uid): skipped (77) otherwise.
# Also: a certificate that expires within 14 days is named with a warning;
# a database that cannot be opened is a configuration error (78).
set -eu
top_builddir=${top_builddir:-.}
bin=$(cd "$top_builddir/src" && pwd)/slhookd
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$bin" --init "$dir/soon" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 -subj /CN=localhost \
        -keyout "$dir/soon/key.pem" -out "$dir/soon/cert.pem" 2>/dev/null
rc=0; out=$(cd "$dir/soon" && "$bin" -c slhookd.conf --check 2>&1) || rc=$?
echo "a certificate valid for 3 days: exit $rc: $out"
[ "$rc" = 0 ] || fail "exit $rc"
echo "$out" | grep -q "warning: cert.pem: certificate expires at .*, in [23] days" || fail "no expiry warning"

# --check opens the database: a file that is not one, a directory that is not there.
head -c 8192 /dev/urandom > "$dir/soon/junk.db"
sed "s|^database = .*|database = junk.db|" "$dir/soon/slhookd.conf" > "$dir/soon/junk.conf"
rc=0; out=$(cd "$dir/soon" && "$bin" -c junk.conf --check 2>&1) || rc=$?
echo "a database that is not one: exit $rc: $out"
[ "$rc" = 78 ] || fail "exit $rc"
echo "$out" | grep -q "junk.conf: \[store\] database: 'junk.db': file is not a database" || fail "junk.db not named"
sed "s|^database = .*|database = $dir/soon/junk.db/events.db|" "$dir/soon/slhookd.conf" > "$dir/soon/under.conf"
rc=0; out=$(cd "$dir/soon" && "$bin" -c under.conf --check 2>&1) || rc=$?
echo "a database under a file: exit $rc: $out"
[ "$rc" = 78 ] || fail "exit $rc"
echo "$out" | grep -q "cannot create '$dir/soon/junk.db/events.db': $dir/soon/junk.db: Not a directory" || fail "junk.db/ not named"
# A directory not there yet (StateDirectory= makes it): a warning.
sed "s|^database = .*|database = $dir/none/events.db|" "$dir/soon/slhookd.conf" > "$dir/soon/none.conf"
rc=0; out=$(cd "$dir/soon" && "$bin" -c none.conf --check 2>&1) || rc=$?
echo "a database in a directory not there yet: exit $rc: $out"
[ "$rc" = 0 ] || fail "exit $rc"
echo "$out" | grep -q "warning: none.conf: \[store\] database: '$dir/none' does not exist yet" || fail "none/ not named"

[ "$(id -u)" = 0 ] || { echo "not root: the rest skipped"; exit 77; }
command -v setpriv >/dev/null || { echo "setpriv missing: the rest skipped"; exit 77; }
chmod 0755 "$dir"
"$bin" --init "$dir/t" >/dev/null
chmod 0755 "$dir/t"
chmod 0644 "$dir/t/slhookd.conf" "$dir/t/cert.pem"
chmod 0600 "$dir/t/key.pem" "$dir/t/secret"
mkdir -m 0777 "$dir/state"
sed -i "s|^database = .*|database = $dir/state/events.db|" "$dir/t/slhookd.conf"
grep -q "^database = $dir/state/events.db" "$dir/t/slhookd.conf"
# The credentials as systemd leaves them: a directory only the unit's user reads.
mkdir -m 0700 "$dir/creds"
cp "$dir/t/key.pem" "$dir/creds/tls-key"
cp "$dir/t/secret" "$dir/creds/main.secret"
mkdir -m 0700 "$dir/secret-only"
cp "$dir/t/secret" "$dir/secret-only/main.secret"
chown -R 65534:65534 "$dir/creds" "$dir/secret-only"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

rc=0; out=$(cd "$dir/t" && CREDENTIALS_DIRECTORY=$dir/secret-only as_nobody "$bin" -c slhookd.conf --check 2>&1) || rc=$?
echo "without the credential: exit $rc: $out"
[ "$rc" = 78 ] || fail "exit $rc, not 78"
echo "$out" | grep -q "key.pem: cannot read private key: Permission denied" || fail "no 'Permission denied' for key.pem"

rc=0; out=$(cd "$dir/t" && CREDENTIALS_DIRECTORY=$dir/creds as_nobody "$bin" -c slhookd.conf --check 2>&1) || rc=$?
echo "with tls-key and main.secret as credentials: exit $rc: $out"
[ "$rc" = 0 ] || fail "exit $rc with the credential"
echo "$out" | grep -q "configuration OK" || fail "no 'configuration OK'"

rc=0; out=$(cd "$dir/t" && ulimit -n 600 && CREDENTIALS_DIRECTORY=$dir/creds as_nobody "$bin" -c slhookd.conf --check 2>&1) || rc=$?
echo "descriptor limit 600: exit $rc: $out"
[ "$rc" = 78 ] || fail "exit $rc with a limit of 600, not 78"
echo "$out" | grep -q "max_connections = 1024 needs 1088 file descriptors, the limit is 600" || fail "no descriptor message"

rc=0; "$bin" --no-such-flag 2>/dev/null || rc=$?
[ "$rc" = 64 ] || fail "a bad flag exits $rc, not 64"
echo PASS
