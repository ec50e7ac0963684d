#!/bin/sh
# The node's two counts for telemetry, read from its PostgreSQL, printed as the
# agent's telemetry.app_metrics_command expects them (docs/telemetry.md, "The
# application's numbers"):
#   {"activeUsers": N, "exercisesCompletedToday": M}
#
#   activeUsers              accounts not disabled: rows of `users` whose `active` is
#                            not false (the seats a licence's maxUsers counts)
#   exercisesCompletedToday  rows of `user_exercise_results` whose `date` falls on the
#                            database's current date (its `timezone` setting)
#
# The agent runs it with PATH and LANG only (no HOME, no PG* variables): everything
# comes from the arguments.
#   node-metrics.sh [--container NAME] [--host HOST_OR_SOCKET_DIR] [--port N]
#                   [--db NAME] [--user NAME] [--pgpass FILE]
# --container: psql inside the node's database container (docker exec; the compose
# file's is cs-agent-postgres); otherwise psql on the box. Defaults: the compose file's
# database cybersensei_db, user cybersensei, 127.0.0.1:5432. A password belongs in a
# pgpass file (--pgpass), never in the argv (ps shows it).
# Exit 0 with the JSON on stdout, or non-zero with the reason on stderr.
set -eu

container= host=127.0.0.1 port=5432 db=cybersensei_db user=cybersensei pgpass=
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "node-metrics: $1 needs a value" >&2; exit 2; }
  case "$1" in
    --container) container=$2 ;;
    --host) host=$2 ;;
    --port) port=$2 ;;
    --db) db=$2 ;;
    --user) user=$2 ;;
    --pgpass) pgpass=$2 ;;
    *) echo "node-metrics: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done

# One statement, one row: both counts from the same snapshot.
sql="SELECT json_build_object(
  'activeUsers', (SELECT count(*) FROM users WHERE active IS NOT FALSE),
  'exercisesCompletedToday', (SELECT count(*) FROM user_exercise_results
                              WHERE \"date\" >= current_date AND \"date\" < current_date + 1))"

# -X: no psqlrc; -w: never prompt; ON_ERROR_STOP: a missing table is an exit status.
if [ -n "$container" ]; then
  out=$(docker exec "$container" psql -X -w -q -A -t -v ON_ERROR_STOP=1 \
    -U "$user" -d "$db" -c "$sql")
else
  [ -z "$pgpass" ] || export PGPASSFILE="$pgpass"
  out=$(PGCONNECT_TIMEOUT=5 psql -X -w -q -A -t -v ON_ERROR_STOP=1 \
    -h "$host" -p "$port" -U "$user" -d "$db" -c "$sql")
fi
case "$out" in
  '{'*'}') printf '%s\n' "$out" ;;
  *) echo "node-metrics: unexpected answer from psql: $out" >&2; exit 1 ;;
esac
