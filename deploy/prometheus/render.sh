#!/bin/sh
# Print billingd's alert rules (or, with --tests, their promtool tests) for a scrape
# job named JOB instead of "billingd":
#
#   deploy/prometheus/render.sh JOB > /etc/prometheus/rules/billingd.yaml
#   deploy/prometheus/render.sh --tests JOB > alerts_test.yaml   # beside the rules
#
# Only the job selector changes (job="billingd" in the rules; the job label of the
# tests' series and expected alerts); names, thresholds and runbooks stay. JOB is a
# plain name: letters, digits, "_", "-", ".", ":". check.sh renders and tests a copy.
set -eu

tests=
if [ "${1:-}" = "--tests" ]; then
	tests=1
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: render.sh [--tests] JOB" >&2
	exit 2
fi
job=$1
case $job in
'' | *[!A-Za-z0-9_.:-]*)
	echo "render.sh: job name $job: use letters, digits, _ - . : only" >&2
	exit 2
	;;
esac
dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)

if [ -z "$tests" ]; then
	sed "s/job=\"billingd\"/job=\"$job\"/g; s/in job \"billingd\"/in job \"$job\"/g" "$dir/alerts.yaml"
else
	sed "s/job=\"billingd\"/job=\"$job\"/g; s/in job \"billingd\"/in job \"$job\"/g; s/^\( *\)job: billingd\$/\1job: $job/" \
		"$dir/alerts_test.yaml"
fi
