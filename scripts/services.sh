#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on their default loopback ports:
# starts them when installed but stopped, installs them with apt-get when missing.
# Usage: scripts/services.sh [postgres] [redis]   (both when no argument)
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(postgres redis)

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ $apt_updated -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "services: $name is up"; return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up" >&2
  return 1
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

ensure_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && postgres_up; then echo "services: postgres is up"; return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing postgresql"
    apt_install postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  local conf=/etc/postgresql/$ver/main
  # Tests connect as postgres over TCP without a password, as on the CI machines.
  if ! grep -q "projectengine" "$conf/pg_hba.conf"; then
    $SUDO sed -i '1i # projectengine: trust loopback for tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
    || $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload 2>/dev/null || true
  wait_for postgres postgres_up
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE test"
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }

ensure_redis() {
  if command -v redis-cli >/dev/null 2>&1 && redis_up; then echo "services: redis is up"; return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "services: installing redis"
    apt_install redis-server
  fi
  mkdir -p /tmp/projectengine-redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp/projectengine-redis --logfile /tmp/projectengine-redis/redis.log
  wait_for redis redis_up
}

for s in "${want[@]}"; do
  case "$s" in
    postgres) ensure_postgres ;;
    redis) ensure_redis ;;
    *) echo "services: unknown service $s" >&2; exit 2 ;;
  esac
done
