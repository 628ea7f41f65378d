#!/usr/bin/env bash
# Makes sure the programs projectengine-sandbox runs are installed: bwrap
# (bubblewrap), setpriv and prlimit (util-linux), and python3, which its
# tests use to allocate and open files past their limits (and the agent
# protocol's end-to-end test runs the Python reference agent with). Installs
# what is missing with apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
{ command -v setpriv >/dev/null 2>&1 && command -v prlimit >/dev/null 2>&1; } || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "sandbox-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Some hosts (Ubuntu 24.04 and later) keep unprivileged user namespaces
# behind AppArmor; bwrap needs them.
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ] \
  && [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns)" = 1 ]; then
  echo "sandbox-deps: allowing unprivileged user namespaces"
  $SUDO sysctl -qw kernel.apparmor_restrict_unprivileged_userns=0
fi
echo "sandbox-deps: $(bwrap --version)"
