#!/usr/bin/env bash
# The deployment files, checked as far as this machine allows (run by .ci/run; by hand from the
# repository root: `bash scripts/check-deploy.sh`). Fails on the first broken file.
#
#  1. the Debian package: built with `cargo deb` (the production build, no `lab` feature),
#     inspected (control fields, conffile, every file and its mode, maintainer scripts), its
#     binary run (a production build refuses `demo`), and, when run as root on a machine
#     without a `gateway` user, installed with dpkg, checked (user, data directory owner and
#     mode, configuration) and purged again, the user and data directory removed;
#  2. the systemd unit: `systemd-analyze verify` in a scratch root that holds the packaged
#     binary and unit (any message fails: verify exits 0 on an unknown key), and
#     `systemd-analyze security --offline` under an exposure threshold;
#  3. the container: the Containerfile's structure (scripts/deploy_check.py; hadolint too when
#     installed); the compose file against the Compose Specification's schema (and with
#     `docker compose config` when the compose plugin is installed); the configurations the
#     compose file and the Kubernetes base ship, with the packaged `gateway check-config`;
#  4. Prometheus: where promtool is installed, the alert rules checked and their unit tests
#     (deploy/prometheus/alerts_test.yml) run;
#  5. Kubernetes: the PrometheusRule is what deploy/prometheus/alerts.yml generates; base and
#     production overlay rendered and validated (kubernetes-validate, the CRD schemas, the
#     gateway's own rules).
#
# Environment: DEPLOY_CHECK_QUICK=1 builds the package's binary without optimisation (the
# package's layout is what is checked; CI sets it to keep its time: an optimised build of the
# whole tree takes tens of minutes on two cores). DEPLOY_CHECK_INSTALL=0 skips the dpkg install.
# DEPLOY_CHECK_DEB=FILE checks that package instead of building one (it must hold this tree's
# unit and example configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf -- '--- %s\n' "$*"; }
fail() { echo "check-deploy: $*" >&2; exit 1; }

# ------------------------------------------------------------------ tools
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb (cargo install --locked cargo-deb; about 6 minutes on two cores)"
  cargo install --locked cargo-deb
fi
python3 -c 'import jsonschema, yaml, kubernetes_validate' 2>/dev/null \
  || pip install --quiet jsonschema pyyaml kubernetes-validate
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi

# ------------------------------------------------------------------ 1. the Debian package
say "building the Debian package (cargo deb, production build)"
if [ "${DEPLOY_CHECK_QUICK:-0}" = 1 ] && [ -z "${DEPLOY_CHECK_DEB:-}" ]; then
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_INCREMENTAL=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256
  say "DEPLOY_CHECK_QUICK=1: the binary is not optimised (layout check only)"
fi
if [ -n "${DEPLOY_CHECK_DEB:-}" ]; then
  deb=$DEPLOY_CHECK_DEB
  say "DEPLOY_CHECK_DEB: checking $deb, not building one"
else
  rm -rf "$target/debian-check"
  cargo deb -p gateway -o "$target/debian-check/" --quiet
  deb=$(ls "$target"/debian-check/gateway_*.deb)
fi
[ -f "$deb" ] || fail "cargo deb made no package"
say "inspecting $(basename "$deb")"
dpkg-deb --info "$deb" >"$work/info"
dpkg-deb --contents "$deb" >"$work/contents"
cat "$work/info" "$work/contents"
dpkg-deb --field "$deb" Package | grep -qx gateway || fail "package name is not gateway"
dpkg-deb --field "$deb" Depends | grep -q 'libssl3' || fail "Depends lacks libssl3 (the binary links the system OpenSSL)"
dpkg-deb --field "$deb" Depends | grep -q 'adduser' || fail "Depends lacks adduser (postinst uses it)"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work" ./conffiles ./postinst ./postrm
grep -qx /etc/gateway/gateway.toml "$work/conffiles" || fail "/etc/gateway/gateway.toml is not a conffile"
# Each packaged file with its mode (the unit's folder depends on the cargo-deb version).
expect_file() { # mode path
  grep -Eq "^$1 (0/0|root/root) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" "$work/contents" \
    || fail "the package lacks $2 with mode $1"
}
expect_file -rwxr-xr-x usr/bin/gateway
expect_file -rw-r----- etc/gateway/gateway.toml
expect_file -rw-r--r-- '(usr/)?lib/systemd/system/gateway.service'
expect_file -rw-r--r-- usr/share/gateway/rabbitmq/definitions.json
expect_file -rw-r--r-- usr/share/gateway/prometheus/alerts.yml
expect_file -rw-r--r-- usr/share/gateway/grafana/gateway-dashboard.json
expect_file -rw-r--r-- usr/share/doc/gateway/operations.md
grep -q 'adduser --system' "$work/postinst" || fail "postinst does not create the gateway system user"
grep -q 'install -d -o gateway -g gateway -m 0750 /var/lib/gateway' "$work/postinst" \
  || fail "postinst does not make /var/lib/gateway (gateway, 0750)"
sh -n "$work/postinst" && sh -n "$work/postrm" || fail "a maintainer script does not parse"
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
cmp -s "$work/root/etc/gateway/gateway.toml" gateway.example.toml || fail "the conffile is not gateway.example.toml"
unit=""
for u in "$work"/root/{usr/,}lib/systemd/system/gateway.service; do [ -f "$u" ] && unit=$u && break; done
[ -n "$unit" ] || fail "the package holds no gateway.service"
cmp -s "$unit" deploy/systemd/gateway.service || fail "the packaged unit is not deploy/systemd/gateway.service"
bin="$work/root/usr/bin/gateway"
"$bin" --version
set +e
"$bin" demo >"$work/demo.out" 2>&1
code=$?
set -e
[ "$code" = 2 ] && grep -q 'without the `lab` feature' "$work/demo.out" \
  || fail "the packaged binary is not the production build (gateway demo exited $code: $(cat "$work/demo.out"))"
say "the packaged gateway is the production build (demo refused, exit 2)"

if [ "${DEPLOY_CHECK_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] && ! getent passwd gateway >/dev/null \
   && ! dpkg -s gateway >/dev/null 2>&1 && [ ! -e /var/lib/gateway ] && [ ! -e /etc/gateway ]; then
  say "installing the package on this machine (dpkg -i), then purging it"
  undo() {
    dpkg --purge gateway >/dev/null 2>&1 || true
    userdel gateway >/dev/null 2>&1 || true
    groupdel gateway >/dev/null 2>&1 || true
    rm -rf /var/lib/gateway /etc/gateway
  }
  trap 'undo; rm -rf "$work"' EXIT
  dpkg -i "$deb"
  getent passwd gateway | grep -q ':/var/lib/gateway:/usr/sbin/nologin$' || fail "no gateway system user"
  [ "$(stat -c '%U:%G %a' /var/lib/gateway)" = "gateway:gateway 750" ] \
    || fail "/var/lib/gateway is $(stat -c '%U:%G %a' /var/lib/gateway), not gateway:gateway 750"
  [ "$(stat -c '%U:%G %a' /etc/gateway/gateway.toml)" = "root:gateway 640" ] \
    || fail "/etc/gateway/gateway.toml is $(stat -c '%U:%G %a' /etc/gateway/gateway.toml), not root:gateway 640"
  [ "$(readlink /etc/gateway/data)" = /var/lib/gateway ] || fail "/etc/gateway/data is not a link to /var/lib/gateway"
  # The service user can read its configuration and write its data directory.
  runuser -u gateway -- test -r /etc/gateway/gateway.toml || fail "gateway cannot read its configuration"
  runuser -u gateway -- touch /var/lib/gateway/.write-test && rm /var/lib/gateway/.write-test
  dpkg -r gateway
  [ -e /usr/bin/gateway ] && fail "dpkg -r left /usr/bin/gateway"
  [ -f /etc/gateway/gateway.toml ] || fail "dpkg -r removed the conffile (only purge may)"
  dpkg --purge gateway
  [ -e /etc/gateway/gateway.toml ] && fail "dpkg --purge left the conffile"
  [ -d /var/lib/gateway ] || fail "dpkg --purge removed the data directory (it must keep it)"
  undo
  trap 'rm -rf "$work"' EXIT
  say "installed, checked and purged; the machine is as it was"
else
  say "SKIPPED the dpkg install: needs root and no existing gateway user, package, /etc/gateway or /var/lib/gateway (DEPLOY_CHECK_INSTALL=${DEPLOY_CHECK_INSTALL:-1})"
  [ "${CI:-}" = true ] && [ "${DEPLOY_CHECK_INSTALL:-1}" = 1 ] && fail "CI must install the package"
fi

# ------------------------------------------------------------------ 2. the systemd unit
say "systemd-analyze verify (scratch root: the packaged files and systemd's own units)"
mkdir -p "$work/root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$work/root/usr/lib/systemd/"
# The package's unit goes in last: systemd's copy must not shadow it.
install -D -m 0644 deploy/systemd/gateway.service "$work/root/etc/systemd/system/gateway.service"
if ! systemd-analyze verify --root="$work/root" gateway.service >"$work/verify" 2>&1 || [ -s "$work/verify" ]; then
  cat "$work/verify"
  fail "systemd-analyze verify: deploy/systemd/gateway.service has problems (above)"
fi
say "systemd-analyze security (offline): exposure at most 2.0 of 10"
systemd-analyze security --offline=yes --root="$work/root" --threshold=20 gateway.service | tail -1 \
  || fail "the unit's exposure is above 2.0 (systemd-analyze security gateway.service)"

# ------------------------------------------------------------------ 3. container and compose
say "Containerfile"
python3 scripts/deploy_check.py containerfile deploy/container/Containerfile
if command -v hadolint >/dev/null; then hadolint deploy/container/Containerfile; else say "hadolint not installed: skipped (optional)"; fi
say "compose file against the Compose Specification"
export GATEWAY_AMQP_PASSWORD=check GATEWAY_PG_PASSWORD=check GRAFANA_ADMIN_PASSWORD=check \
  GATEWAY_OPS_TOKEN=check-ops-token-0123456789 GATEWAY_ONESTOP_TOKEN=check-source-token-0123456789
python3 scripts/deploy_check.py compose deploy/compose/compose.yaml
if docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/compose/compose.yaml config --quiet
else
  say "docker compose plugin not installed: the schema check above stands in for \`docker compose config\`"
fi
say "the shipped configurations, with the packaged gateway check-config"
for cfg in deploy/compose/gateway.toml deploy/k8s/base/gateway.toml; do
  "$bin" check-config "$cfg" || fail "$cfg does not pass gateway check-config"
done

# ------------------------------------------------------------------ 4. Kubernetes
if command -v promtool >/dev/null; then
  say "Prometheus rules: promtool check rules, and the rules' unit tests (alerts_test.yml)"
  promtool check rules deploy/prometheus/alerts.yml
  promtool test rules deploy/prometheus/alerts_test.yml
else
  say "promtool not installed (apt-get install prometheus): the rules' unit tests skipped (optional)"
fi
say "Kubernetes: PrometheusRule from alerts.yml; base and production overlay"
python3 scripts/deploy_check.py prometheusrule
python3 scripts/deploy_check.py k8s deploy/k8s/base deploy/k8s/overlays/production

say "deployment checks passed"
