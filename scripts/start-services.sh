#!/usr/bin/env bash
# Start the local PostgreSQL, MariaDB and Redis when they are installed but not answering.
# Used by `make test`; harmless where they run already or are not installed.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 5432 && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 3306 && [ -x /usr/sbin/mariadbd ]; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
fi
for _ in $(seq 1 30); do
  { up 5432 || ! [ -d /etc/postgresql ]; } && { up 3306 || ! [ -x /usr/sbin/mariadbd ]; } \
    && { up 6379 || ! command -v redis-server >/dev/null; } && exit 0
  sleep 1
done
exit 0
