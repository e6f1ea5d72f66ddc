#!/usr/bin/env bash
# make demo: the paper's scenario on the testbed. orc8r and agw run in the edge cluster; orc8r
# moves to the cloud cluster while agw keeps checking in every 10 ms; then the migration report
# and agw's record of those seconds (requests, failed, longest gap) are printed.
# The testbed stays up afterwards (`kubehop testbed down` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
STRATEGY="${STRATEGY:-endpoints}"

kubehop testbed up --clusters edge,fog,cloud
kubehop testbed status
KC="$(kubehop testbed kubeconfig)"
echo "--- deploying orc8r (orc8r-ns) and agw (agw-ns) in edge"
kubehop testbed deploy-sample --cluster edge

echo "--- the plan (nothing changes yet)"
kubehop migrate orc8r -n orc8r-ns --from edge --to cloud --strategy "$STRATEGY" --dry-run

echo "--- migrating orc8r edge -> cloud ($STRATEGY) under agw's load"
START="$(date +%s.%N)"
kubehop migrate orc8r -n orc8r-ns --from edge --to cloud --strategy "$STRATEGY" --drain 2
sleep 2
END="$(date +%s.%N)"

echo "--- agw's record over the migration"
python - "$START" "$END" <<'PY'
import sys
from kubehop.testbed import layout, sample
from kubehop.testbed import testbed as tb
edge = next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "edge")
r = sample.agw_record(edge, since=float(sys.argv[1]), until=float(sys.argv[2]))
lat = r["latency_ms"]
print(f"requests {r['count']}, failed {r['failed']}, longest gap {r['longest_gap_ms']} ms, "
      f"latency p50 {lat['p50']} ms p99 {lat['p99']} ms, served by {r['served_by']}")
PY
echo "--- done; the testbed stays up. Try: kubectl --kubeconfig $KC --context cloud -n orc8r-ns get pods"

echo "=== part two: the controller decides on its own (edge, fog, cloud; default WAN)"
python scripts/demo_controller.py
