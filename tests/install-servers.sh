#!/usr/bin/env bash
# Installs the real servers the integration tests run (Debian packages): Alertmanager, Prometheus
# (with promtool) and Redis, and Chromium for the browser tests. Does nothing when they are there.
set -euo pipefail
need=()
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# headless Chromium for the incident-page browser tests (driven by Playwright, no browser download)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing test servers: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system services; the tests start their own on free ports.
for svc in prometheus prometheus-alertmanager redis-server prometheus-node-exporter; do
  $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
