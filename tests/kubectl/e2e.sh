#!/usr/bin/env bash
# The kubectl end-to-end script: the real kubectl against a served cluster, asserting on output
# and exit codes. KUBECONFIG must point at the cluster (cli/tests/kubectl_e2e.rs starts
# `kybernetes serve` and runs this). It fails, not skips, when kubectl is missing.
#
# Each check waits for a positive signal (kubectl wait, rollout status, a line in the output)
# with a generous timeout; nothing sleeps and then asserts that something did not happen.
set -uo pipefail

source "$(dirname "$0")/lib.sh"

echo "== cluster"
check "version" -- k version
contains "version names the server" "Server Version: v1.33"
check "cluster-info" -- k cluster-info
contains "cluster-info names the control plane" "control plane is running at https://"
check "get nodes" -- k get nodes
matches "nodes are Ready" "node-1 +Ready"
check "api-resources" -- k api-resources
for r in "deployments +deploy +apps/v1 +true +Deployment" "pods +po +v1 +true +Pod" "nodes +no +v1 +false +Node" "customresourcedefinitions +crd,crds"; do
  matches "api-resources lists ${r%% *}" "$r"
done
check "explain" -- k explain deployment.spec.replicas
contains "explain describes the field" "replicas"
check "config get-contexts" -- k config get-contexts
CTX=$(k config current-context)
contains "get-contexts marks the current one" "* "
check "config current-context" -- k config current-context
check "config use-context" -- k config use-context "$CTX"
contains "use-context switches" "Switched to context \"$CTX\""

echo "== create and apply"
cat >"$WORK/app.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: e2e
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: e2e
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: e2e
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: e2e
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: e2e
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
YAML
check "create -f multi-document" -- k create -f "$WORK/app.yaml"
for o in namespace/e2e configmap/web-config secret/web-secret deployment.apps/web service/web; do contains "create made $o" "$o created"; done
check "apply -f over created objects" -- k apply -f "$WORK/app.yaml"
contains "apply configures the deployment" "deployment.apps/web configured"
sed -i 's/greeting: hello/greeting: hello-again/' "$WORK/app.yaml"
check "apply -f again (a patch)" -- k apply -f "$WORK/app.yaml"
contains "second apply configures the configmap" "configmap/web-config configured"
contains "second apply leaves the service" "service/web unchanged"
check "the patch is stored" -- k -n e2e get configmap web-config -o jsonpath='{.data.greeting}'
contains "configmap has the applied value" "hello-again"
check "rollout status" -- k -n e2e rollout status deployment/web --timeout=$T
contains "rollout status reports success" "successfully rolled out"

echo "== get"
check "get -o wide" -- k -n e2e get pods -o wide
matches "wide shows IP and NODE" "IP +NODE +NOMINATED NODE +READINESS GATES"
matches "pods are Running" "web-[a-z0-9]+-[a-z0-9]+ +1/1 +Running"
check "get pods,svc" -- k -n e2e get pods,svc
contains "pods,svc lists the service" "service/web"
check "get all" -- k -n e2e get all
for o in "deployment.apps/web" "replicaset.apps/web-" "service/web" "pod/web-"; do contains "get all shows $o" "$o"; done
check "get -l" -- k -n e2e get pods -l app=web -o name
[ "$(grep -c '^pod/web-' <<<"$OUT")" = 2 ] && echo "ok   -l selects both pods" || { failures=$((failures+1)); echo "FAIL -l selects both pods: $OUT"; }
check "get -l with no match" -- k -n e2e get pods -l app=nothing
contains "no match says so" "No resources found in e2e namespace."
check "get -o json" -- k -n e2e get deployment web -o json
contains "json has the kind" '"kind": "Deployment"'
check "get -o yaml" -- k -n e2e get deployment web -o yaml
contains "yaml has the kind" "kind: Deployment"
check "get -o jsonpath" -- k -n e2e get deployment web -o 'jsonpath={.spec.replicas}/{.status.readyReplicas}'
contains "jsonpath prints the fields" "2/2"
check "get -o go-template" -- k -n e2e get pods -o 'go-template={{range .items}}{{.metadata.name}} {{.status.phase}}{{"\n"}}{{end}}'
matches "go-template prints each pod" "web-.* Running"
check "get -o name" -- k -n e2e get deployment,service -o name
contains "name output" "deployment.apps/web"
contains "name output lists the service" "service/web"
# get -w: start a watch, then change the object; the watch prints the change.
k -n e2e get configmap web-config -w -o 'jsonpath={.data.greeting}{"\n"}' >"$WORK/watch.out" 2>&1 &
WATCH=$!
eventually "get -w prints the current state" 30 -- grep -q hello-again "$WORK/watch.out"
k -n e2e patch configmap web-config --type merge -p '{"data":{"greeting":"watched"}}' >/dev/null
eventually "get -w streams a change" 30 -- grep -q watched "$WORK/watch.out"
kill $WATCH 2>/dev/null; wait $WATCH 2>/dev/null

echo "== describe"
POD=$(k -n e2e get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
check "describe pod" -- k -n e2e describe pod "$POD"
matches "describe pod shows the status" "^Status: +Running"
contains "describe pod shows events" "Scheduled"
check "describe deployment" -- k -n e2e describe deployment web
contains "describe deployment shows replicas" "2 desired | 2 updated | 2 total | 2 available | 0 unavailable"
contains "describe deployment shows events" "ScalingReplicaSet"
check "describe node" -- k describe node node-1
contains "describe node shows capacity" "Capacity:"
contains "describe node shows pods" "Non-terminated Pods:"

echo "== scale"
check "scale deployment" -- k -n e2e scale deployment web --replicas=3
contains "scale says scaled" "deployment.apps/web scaled"
check "scale reaches 3" -- k -n e2e rollout status deployment/web --timeout=$T
eventually "3 ready replicas" 60 -- bash -c "[ \"\$($KUBECTL -n e2e get deployment web -o jsonpath='{.status.readyReplicas}')\" = 3 ]"
cat >"$WORK/rs.yaml" <<'YAML'
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: lone, namespace: e2e}
spec:
  replicas: 1
  selector: {matchLabels: {app: lone}}
  template:
    metadata: {labels: {app: lone}}
    spec: {containers: [{name: c, image: busybox}]}
YAML
check "create a replicaset" -- k apply -f "$WORK/rs.yaml"
check "scale replicaset" -- k -n e2e scale rs lone --replicas=2
eventually "replicaset has 2 ready" 60 -- bash -c "[ \"\$($KUBECTL -n e2e get rs lone -o jsonpath='{.status.readyReplicas}')\" = 2 ]"

echo "== rollouts"
check "set image" -- k -n e2e set image deployment/web web=nginx:1.28
contains "set image updates the image" "deployment.apps/web image updated"
check "rollout status after set image" -- k -n e2e rollout status deployment/web --timeout=$T
check "rollout history" -- k -n e2e rollout history deployment/web
matches "history has two revisions" "^2 "
check "rollout undo" -- k -n e2e rollout undo deployment/web
contains "undo rolls back" "deployment.apps/web rolled back"
check "rollout status after undo" -- k -n e2e rollout status deployment/web --timeout=$T
check "image is back" -- k -n e2e get deployment web -o 'jsonpath={.spec.template.spec.containers[0].image}'
contains "undo restored the image" "nginx:1.27"
check "rollout restart" -- k -n e2e rollout restart deployment/web
contains "restart says restarted" "deployment.apps/web restarted"
check "restart annotation" -- k -n e2e get deployment web -o 'jsonpath={.spec.template.metadata.annotations}'
contains "restart stamps restartedAt" "kubectl.kubernetes.io/restartedAt"
check "rollout status after restart" -- k -n e2e rollout status deployment/web --timeout=$T
check "rollout pause" -- k -n e2e rollout pause deployment/web
contains "pause says paused" "deployment.apps/web paused"
check "paused is stored" -- k -n e2e get deployment web -o 'jsonpath={.spec.paused}'
contains "spec.paused is true" "true"
check "rollout resume" -- k -n e2e rollout resume deployment/web
contains "resume says resumed" "deployment.apps/web resumed"

echo "== edit, label, annotate, expose, run"
cat >"$WORK/editor.sh" <<'SH'
#!/bin/sh
sed -i 's/greeting: .*/greeting: edited/' "$1"
SH
chmod +x "$WORK/editor.sh"
check "edit" -- env EDITOR="$WORK/editor.sh" KUBE_EDITOR="$WORK/editor.sh" "$KUBECTL" -n e2e edit configmap web-config
contains "edit says edited" "configmap/web-config edited"
check "edit is stored" -- k -n e2e get configmap web-config -o jsonpath='{.data.greeting}'
contains "edited value" "edited"
check "label" -- k -n e2e label deployment web tier=frontend
contains "label says labeled" "deployment.apps/web labeled"
check "label selects" -- k -n e2e get deployments -l tier=frontend -o name
contains "labelled deployment selected" "deployment.apps/web"
check "annotate" -- k -n e2e annotate deployment web owner=e2e
contains "annotate says annotated" "deployment.apps/web annotated"
check "expose --type=NodePort" -- k -n e2e expose deployment web --name=web-np --type=NodePort --port=8080 --target-port=80
contains "expose says exposed" "service/web-np exposed"
check "nodeport assigned" -- k -n e2e get service web-np -o jsonpath='{.spec.type} {.spec.ports[0].nodePort}'
matches "service is NodePort with a port" "^NodePort 3[0-9]{4}$"
eventually "nodeport service gets endpoints" 60 -- bash -c "$KUBECTL -n e2e get endpoints web-np -o jsonpath='{.subsets[0].addresses[*].ip}' | grep -q ."
check "run" -- k -n e2e run solo --image=busybox --restart=Never --labels=run=solo
contains "run says created" "pod/solo created"
check "run pod is Ready" -- k -n e2e wait --for=condition=Ready pod/solo --timeout=$T

echo "== configmaps and secrets"
printf 'a=1\nb=2\n' >"$WORK/settings.env"
check "create configmap --from-file" -- k -n e2e create configmap files --from-file=settings="$WORK/settings.env"
check "configmap holds the file" -- k -n e2e get configmap files -o jsonpath='{.data.settings}'
contains "file content" "a=1"
check "create configmap --from-literal" -- k -n e2e create configmap lits --from-literal=k1=v1 --from-literal=k2=v2
check "literal values" -- k -n e2e get configmap lits -o jsonpath='{.data.k1},{.data.k2}'
contains "both literals" "v1,v2"
check "create secret generic" -- k -n e2e create secret generic creds --from-literal=user=admin
check "secret is base64" -- k -n e2e get secret creds -o jsonpath='{.data.user}'
contains "base64 of admin" "YWRtaW4="
check "secret type defaults" -- k -n e2e get secret creds -o jsonpath='{.type}'
contains "type Opaque" "Opaque"

echo "== logs and exec"
# The rollouts replaced the pods: pick a current one.
POD=$(k -n e2e get pods -l app=web --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}')
check "logs" -- k -n e2e logs "$POD"
check "logs --tail --timestamps" -- k -n e2e logs "$POD" --tail=1 --timestamps
check "exec" -- k -n e2e exec "$POD" -- echo hello from exec
contains "exec prints" "hello from exec"
check "exec with stdin" -- bash -c "echo piped | $KUBECTL -n e2e exec -i $POD -- cat"
contains "stdin reaches the container" "piped"
check_fails "exec exit code" -- k -n e2e exec "$POD" -- sh -c 'exit 3'
matches "exit code is reported" "command terminated with exit code 3"

echo "== nodes"
NODE=$(k -n e2e get pod "$POD" -o jsonpath='{.spec.nodeName}')
check "cordon" -- k cordon "$NODE"
contains "cordoned" "node/$NODE cordoned"
check "cordon marks unschedulable" -- k get node "$NODE"
contains "status shows SchedulingDisabled" "SchedulingDisabled"
check "drain" -- k drain "$NODE" --ignore-daemonsets --force --delete-emptydir-data --timeout=$T
contains "drain evicts and finishes" "node/$NODE drained"
eventually "no web pods left on the drained node" 60 -- bash -c "! $KUBECTL -n e2e get pods -l app=web --field-selector spec.nodeName=$NODE -o name | grep -q ."
check "taint" -- k taint nodes "$NODE" dedicated=e2e:NoSchedule
contains "tainted" "node/$NODE tainted"
check "taint is stored" -- k get node "$NODE" -o jsonpath='{.spec.taints[*].key}'
contains "taint key" "dedicated"
check "untaint" -- k taint nodes "$NODE" dedicated=e2e:NoSchedule-
contains "untainted" "node/$NODE untainted"
check "uncordon" -- k uncordon "$NODE"
contains "uncordoned" "node/$NODE uncordoned"

echo "== drain waits on a PodDisruptionBudget"
check "deployment guarded" -- k -n e2e create deployment guarded --image=busybox --replicas=1
eventually "guarded pod runs" 60 -- bash -c "$KUBECTL -n e2e get pods -l app=guarded --field-selector=status.phase=Running -o name | grep -q ."
check "pdb minAvailable=1" -- k -n e2e create pdb guarded --selector=app=guarded --min-available=1
eventually "the budget is computed: 0 disruptions allowed" 60 -- bash -c "[ \"\$($KUBECTL -n e2e get pdb guarded -o jsonpath='{.status.currentHealthy}/{.status.disruptionsAllowed}')\" = 1/0 ]"
GPOD=$(k -n e2e get pods -l app=guarded -o jsonpath='{.items[0].metadata.name}')
GNODE=$(k -n e2e get pod "$GPOD" -o jsonpath='{.spec.nodeName}')
check_fails "drain gives up while the budget forbids the eviction" -- k drain "$GNODE" --pod-selector=app=guarded --timeout=8s
contains "kubectl retries the refused eviction" "Cannot evict pod as it would violate the pod's disruption budget"
check "the guarded pod was not evicted" -- k -n e2e get pod "$GPOD" -o jsonpath='{.metadata.deletionTimestamp}|{.status.phase}'
contains "still running, not terminating" "|Running"
check "relax the budget" -- k -n e2e patch pdb guarded --type=merge -p '{"spec":{"minAvailable":0}}'
eventually "the budget now allows a disruption" 60 -- bash -c "[ \"\$($KUBECTL -n e2e get pdb guarded -o jsonpath='{.status.disruptionsAllowed}')\" = 1 ]"
check "drain evicts once the budget allows it" -- k drain "$GNODE" --pod-selector=app=guarded --timeout=$T
contains "the guarded pod is evicted" "pod/$GPOD evicted"
check "uncordon after the guarded drain" -- k uncordon "$GNODE"

echo "== server-side apply"
cat >"$WORK/ssa.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: e2e}
data: {owner: alice}
YAML
check "apply --server-side" -- k apply --server-side --field-manager=alice -f "$WORK/ssa.yaml"
contains "ssa creates" "configmap/shared serverside-applied"
sed 's/alice/bob/' "$WORK/ssa.yaml" >"$WORK/ssa-bob.yaml"
check_fails "a second manager conflicts" -- k apply --server-side --field-manager=bob -f "$WORK/ssa-bob.yaml"
contains "conflict names the field and manager" 'conflict with "alice"'
contains "conflict names the field" ".data.owner"
check "--force-conflicts takes ownership" -- k apply --server-side --field-manager=bob --force-conflicts -f "$WORK/ssa-bob.yaml"
check "bob owns the field" -- k -n e2e get configmap shared -o jsonpath='{.data.owner}'
contains "value is bob's" "bob"

echo "== auth, raw"
check "auth whoami" -- k auth whoami
contains "whoami names the admin" "Username"
check "auth can-i" -- k auth can-i create pods --namespace e2e
contains "the admin may create pods" "yes"
check "get --raw /metrics" -- k get --raw /metrics
contains "metrics exposes apiserver_request_total" "apiserver_request_total"
check "get --raw /readyz?verbose" -- k get --raw '/readyz?verbose'
contains "readyz passes" "readyz check passed"

# kubectl proxy: it prints the address it serves on; read that line, then go through it.
k proxy --port=0 >"$WORK/proxy.out" 2>&1 &
PROXY=$!
eventually "proxy starts" 30 -- grep -q "Starting to serve on" "$WORK/proxy.out"
PROXY_ADDR=$(sed -n 's/^Starting to serve on //p' "$WORK/proxy.out" | head -1)
check "curl through kubectl proxy" -- curl -sf "http://$PROXY_ADDR/api/v1/namespaces/e2e/configmaps/web-config"
contains "proxy returns the object" '"name":"web-config"'
kill $PROXY 2>/dev/null; wait $PROXY 2>/dev/null

echo "== custom resources"
cat >"$WORK/crd.yaml" <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.example.com}
spec:
  group: e2e.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
YAML
check "apply a CRD" -- k apply -f "$WORK/crd.yaml"
check "the CRD is established" -- k wait --for=condition=Established crd/widgets.e2e.example.com --timeout=$T
cat >"$WORK/widget.yaml" <<'YAML'
apiVersion: e2e.example.com/v1
kind: Widget
metadata: {name: w1, namespace: e2e}
spec: {size: 3}
YAML
eventually "apply a custom resource" 30 -- k apply -f "$WORK/widget.yaml"
check "get custom resources by short name" -- k -n e2e get wd
# With additionalPrinterColumns, a v1 CRD shows NAME and exactly those columns (no Age).
matches "printer column header" "^NAME +SIZE$"
matches "printer column shows" "^w1 +3$"
sed 's/size: 3/size: 0/' "$WORK/widget.yaml" >"$WORK/widget-bad.yaml"
check_fails "schema validation refuses size 0" -- k apply -f "$WORK/widget-bad.yaml"
contains "message names the field" "spec.size"
# kubectl patch defaults to a strategic merge patch, which custom resources don't take: 415.
check_fails "a strategic merge patch of a custom resource is refused" -- k -n e2e patch widget w1 -p '{"spec":{"size":4}}'
contains "415 lists the patch types it takes" "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
check "get the widget after the refused patch" -- k -n e2e get widget w1 -o jsonpath='{.spec.size}'
[ "$OUT" = 3 ] && { checks=$((checks+1)); echo "ok   the refused patch stored nothing"; } || { checks=$((checks+1)); failures=$((failures+1)); echo "FAIL the refused patch stored nothing: size is $OUT"; }
check "a merge patch of it works" -- k -n e2e patch widget w1 --type=merge -p '{"spec":{"size":4}}'

echo "== bad input"
cat >"$WORK/unknown.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: bad, namespace: e2e}
data: {a: b}
bogus: field
YAML
check_fails "an unknown field is refused (Strict)" -- k create -f "$WORK/unknown.yaml"
contains "message names the unknown field" 'unknown field "bogus"'
check "warn validation warns" -- k create -f "$WORK/unknown.yaml" --validate=warn
contains "warning names the field" 'unknown field "bogus"'
check_fails "an invalid name is refused" -- k -n e2e create configmap Bad_Name
contains "invalid name message" "a lowercase RFC 1123 subdomain"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n' >"$WORK/broken.yaml"
check_fails "malformed YAML is refused" -- k create -f "$WORK/broken.yaml"
printf 'apiVersion: v9\nkind: ConfigMap\nmetadata: {name: x, namespace: e2e}\n' >"$WORK/wrongversion.yaml"
check_fails "a wrong apiVersion is refused" -- k create -f "$WORK/wrongversion.yaml"
contains "message names the kind" 'no matches for kind "ConfigMap" in version "v9"'
check_fails "nothing was stored for the wrong apiVersion" -- k -n e2e get configmap x
cat >"$WORK/missing.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: nocontainers, namespace: e2e}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: []}
YAML
check_fails "a missing required field is refused" -- k create -f "$WORK/missing.yaml"
contains "422 message names the field" "spec.template.spec.containers: Required value"
check_fails "nothing partial was stored" -- k -n e2e get deployment nocontainers
# A body over upstream's 3 MiB request limit.
head -c $((3 * 1024 * 1024 + 16)) /dev/zero | tr '\0' x >"$WORK/big.txt"
check_fails "a body over 3 MiB is refused" -- k -n e2e create configmap big --from-file=big="$WORK/big.txt"
contains "the limit is named" "Request entity too large: limit is 3145728"
check_fails "nothing was stored for the big body" -- k -n e2e get configmap big

echo "== delete"
check "run a pod to delete" -- k -n e2e run doomed --image=busybox --restart=Never --labels=run=doomed
check "it is Ready" -- k -n e2e wait --for=condition=Ready pod/doomed --timeout=$T
check "delete -l" -- k -n e2e delete pod -l run=doomed --wait=true --timeout=$T
contains "delete -l deletes" 'pod "doomed" deleted'
check "delete --cascade=orphan" -- k -n e2e delete rs lone --cascade=orphan --wait=true --timeout=$T
eventually "orphaned pods stay and lose their owner" 60 -- bash -c "[ -n \"\$($KUBECTL -n e2e get pods -l app=lone -o name)\" ] && [ -z \"\$($KUBECTL -n e2e get pods -l app=lone -o jsonpath='{.items[*].metadata.ownerReferences}')\" ]"
check "delete -f" -- k delete -f "$WORK/widget.yaml" -f "$WORK/crd.yaml" --wait=true --timeout=$T
contains "delete -f deletes the custom resource" 'widget.e2e.example.com "w1" deleted'
contains "delete -f deletes the CRD" 'customresourcedefinition.apiextensions.k8s.io "widgets.e2e.example.com" deleted'
check_fails "the custom resource type is gone" -- k -n e2e get widgets
check "delete the namespace" -- k delete namespace e2e --wait=true --timeout=$T
contains "namespace deleted" 'namespace "e2e" deleted'
eventually "the namespace is gone with everything in it" 120 -- bash -c "! $KUBECTL get namespace e2e >/dev/null 2>&1"
check "no deployment survives its namespace" -- k get deployments -A -o name
[ -z "$OUT" ] && echo "ok   namespace took its deployments" || { failures=$((failures+1)); echo "FAIL namespace took its deployments: $OUT"; }

finish
