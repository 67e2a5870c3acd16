#!/bin/sh
# Check billingd's Prometheus files: the alert rules parse (promtool check rules),
# every alert fires and clears as alerts_test.yaml says (promtool test rules), the
# rules rendered for another job name (render.sh) pass the same tests rendered alike
# and keep no "billingd" job selector, and the example configuration loads them
# (promtool check config). CI runs this script.
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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$dir/render.sh" billing-prod >"$work/alerts.yaml"
"$dir/render.sh" --tests billing-prod >"$work/alerts_test.yaml"
if grep -n 'job="billingd"\|job: billingd$' "$work/alerts.yaml" "$work/alerts_test.yaml"; then
	echo "check.sh: render.sh left the job name billingd in place (above)" >&2
	exit 1
fi
"$promtool" test rules "$work/alerts_test.yaml"
