# Helpers to run a throwaway PostgreSQL 15 as the postgres user, sourced by
# the benchmark scripts. Sets PGPORT, PGHOST, PGDIR; pg_stop cleans up.
PGBIN=/usr/lib/postgresql/15/bin
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_start() {
  PGDIR=$(mktemp -d /tmp/custos-pg.XXXXXX)
  chown postgres "$PGDIR"
  PGPORT=$(free_port)
  PGHOST=127.0.0.1
  su postgres -c "$PGBIN/initdb -D $PGDIR/data -A trust -U postgres" >/dev/null
  su postgres -c "$PGBIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -o '-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 $*' -w start" >/dev/null
  export PGPORT PGHOST PGDIR PGUSER=postgres
}
pg_stop() {
  su postgres -c "$PGBIN/pg_ctl -D $PGDIR/data -m fast -w stop" >/dev/null || true
  rm -rf "$PGDIR"
}
# The pgbench database `app` at scale 10, which the gateway benchmarks run on.
pg_init_app() {
  psql -q -c "create database app"
  pgbench -i -s 10 -q app >/dev/null 2>&1
}
