#!/usr/bin/env bash
# make demo: bring up the testbed and show what it gives a user. Until the migration engine
# lands (issue 4) the demo deploys a sample service in edge and reaches it from cloud across
# the WAN; it then leaves the testbed up for you to explore (`kubehop testbed down` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

kubehop testbed up
kubehop testbed status
KC="$(kubehop testbed kubeconfig)"
IMAGE="$(python -c 'from kubehop.testbed import images; print(images.httpd_image().ref())')"

echo "--- deploying a sample HTTP service (2 replicas) in edge"
kubectl --kubeconfig "$KC" --context edge apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: $IMAGE
        env: [{name: KUBEHOP_CLUSTER, value: edge}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: demo}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 8080, targetPort: 8080}]
YAML
kubectl --kubeconfig "$KC" --context edge -n demo rollout status deploy/hello --timeout=180s
PORT="$(kubectl --kubeconfig "$KC" --context edge -n demo get svc hello -o jsonpath='{.spec.ports[0].nodePort}')"
EDGE_IP="$(kubehop testbed status -o json | python -c 'import json,sys; print(next(c["address"] for c in json.load(sys.stdin)["clusters"] if c["name"]=="edge"))')"
echo "--- calling it from the cloud cluster's network namespace: http://$EDGE_IP:$PORT/"
for i in 1 2 3 4; do
  ip netns exec kh-cloud python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://$EDGE_IP:$PORT/"
done
echo "--- done; the testbed stays up. Try: kubectl --kubeconfig $KC --context cloud get nodes"
