#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing and we are root:
# the Fashion-MNIST data (always); with --browser, Chromium for the dashboard's browser test; with
# --bench, wrk for the service load benchmark.
set -euo pipefail
want=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want+=(dataset-fashion-mnist)
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  want+=(chromium)
fi
if [ "${1:-}" = "--bench" ] && ! command -v wrk >/dev/null 2>&1; then
  want+=(wrk)
fi
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${want[*]}; install them with: sudo apt-get install -y ${want[*]}" >&2
  exit 0
fi
echo "installing Debian packages: ${want[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
