#!/bin/sh
# End-to-end check of billingd's metrics with a real Prometheus server on loopback.
#
#   deploy/prometheus/e2e.sh TARGET 'QUERY=EXPECTED'...
#   deploy/prometheus/e2e.sh 127.0.0.1:8080 'sum(billingd_payments_submitted_total)=3'
#
# Starts Prometheus (Debian's prometheus package) scraping TARGET every second as job
# "billingd" with alerts.yaml loaded, waits for up{job="billingd"} == 1, then waits
# until each instant QUERY returns EXPECTED (one sample, compared as text after
# `promtool query instant`), failing after $E2E_TIMEOUT seconds (default 60). The
# server and its data are removed on exit. $E2E_PORT sets its port (default 19090).
set -eu

if [ $# -lt 1 ]; then
	echo "usage: e2e.sh TARGET ['QUERY=EXPECTED'...]" >&2
	exit 2
fi
target=$1
shift
dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
port=${E2E_PORT:-19090}
timeout=${E2E_TIMEOUT:-60}
url=http://127.0.0.1:$port

for tool in prometheus promtool; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "e2e.sh: $tool not found (install Debian's prometheus package)" >&2
		exit 1
	fi
done

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

cp "$dir/alerts.yaml" "$work/alerts.yaml"
cat >"$work/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yaml
scrape_configs:
  - job_name: billingd
    static_configs:
      - targets: ["$target"]
CONF

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
	--web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pid=$!

# value QUERY prints the value of the query's single sample, or nothing.
value() {
	promtool query instant "$url" "$1" 2>/dev/null | sed -n 's/^.* => \([^ ]*\) @\[.*$/\1/p'
}

# await QUERY EXPECTED polls until the query returns EXPECTED.
await() {
	start=$(date +%s)
	while :; do
		got=$(value "$1")
		if [ "$got" = "$2" ]; then
			echo "ok: $1 = $2"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "e2e.sh: prometheus exited:" >&2
			cat "$work/prometheus.log" >&2
			exit 1
		fi
		if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
			echo "e2e.sh: $1: got '${got}', want '$2' after ${timeout}s" >&2
			exit 1
		fi
		sleep 1
	done
}

await 'up{job="billingd"}' 1
for check in "$@"; do
	await "${check%=*}" "${check##*=}"
done
