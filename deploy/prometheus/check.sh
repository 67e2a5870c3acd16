#!/bin/sh
# Check billingd's Prometheus files: the alert rules parse (promtool check rules),
# every alert fires and clears as alerts_test.yaml says (promtool test rules), and the
# example configuration loads them (promtool check config). CI runs this script.
# promtool is in Debian's "prometheus" package: apt-get install prometheus.
set -eu

dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
promtool=${PROMTOOL:-promtool}

if ! command -v "$promtool" >/dev/null 2>&1; then
	echo "check.sh: promtool not found (install Debian's prometheus package, or set PROMTOOL)" >&2
	exit 1
fi

"$promtool" check rules "$dir/alerts.yaml"
"$promtool" test rules "$dir/alerts_test.yaml"
"$promtool" check config "$dir/prometheus.yml"
