#!/usr/bin/env bash
# Lint Prometheus exposition text with `promtool check metrics`.
#   scripts/promtool-check.sh < metrics.txt     check stdin (exit 1 on any lint problem)
#   scripts/promtool-check.sh --install         only make sure promtool is installed (CI, before pytest)
# promtool ships in Debian's `prometheus` package; it is installed with apt-get when missing (needs root).
set -euo pipefail
trap '[ "${created:-0}" -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool-check: promtool is missing; install Debian's 'prometheus' package (apt-get install prometheus)" >&2
    return 2
  fi
  echo "promtool-check: installing Debian's prometheus package for promtool" >&2
  # policy-rc.d 101: the package's service must not start (no init system in CI containers, and no need).
  local policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1; fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ "$created" -eq 1 ]; then rm -f "$policy"; fi
  command -v promtool >/dev/null 2>&1
}

ensure_promtool
if [ "${1:-}" = "--install" ]; then
  promtool --version 2>&1 | head -1 >&2
  exit 0
fi
exec promtool check metrics
