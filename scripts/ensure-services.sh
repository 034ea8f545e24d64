#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ when they are down (CI and fresh machines), then wait.
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do up "$port" && return 0; sleep 1; done
  echo "ensure-services: $name did not come up on port $port" >&2
  return 1
}

if ! up 5432; then
  echo "ensure-services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! up 6379; then
  echo "ensure-services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! up 5672; then
  echo "ensure-services: starting RabbitMQ"
  rabbitmq-server -detached || true
fi
wait_port PostgreSQL 5432 && wait_port Redis 6379 && wait_port RabbitMQ 5672
