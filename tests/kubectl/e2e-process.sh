#!/usr/bin/env bash
# The kubectl commands that need a real process behind the pod, against `kybernetes serve
# --runtime process` (cli/tests/kubectl_e2e.rs starts it and runs this): `logs -f`, `cp` both
# ways, `attach`, `run -i --rm`, `port-forward` with an HTTP client through the tunnel, and
# `proxy` with curl to a pod's URL.
#
# Host mode runs a container's command on this machine, so paths inside "the container" are
# this machine's: the pods work under this script's own temp dir. Containers run Debian's
# busybox-static (/bin/busybox), which the test script installs.
set -uo pipefail

source "$(dirname "$0")/lib.sh"

[ -x /bin/busybox ] || { echo "FAIL: /bin/busybox is missing (Debian's busybox-static)"; exit 1; }
NS=proc
WWW="$WORK/www"
mkdir -p "$WWW"
# A port below the kernel's ephemeral range (32768+), so no client socket holds it; the
# runtime refuses a port claimed twice.
PORT=$((20000 + RANDOM % 12000))

echo "== process pods"
check "create the namespace" -- k create namespace $NS
cat >"$WORK/pods.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: $NS
spec:
  containers:
  - name: httpd
    image: busybox
    command: ["/bin/busybox", "httpd", "-f", "-p", "$PORT", "-h", "$WWW"]
    ports:
    - containerPort: $PORT
    readinessProbe:
      tcpSocket:
        port: $PORT
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: waiter
  namespace: $NS
spec:
  containers:
  - name: main
    image: busybox
    command: ["/bin/sh", "-c", "echo started; while [ ! -f '$WORK/go' ]; do sleep 0.1; done; echo after-go; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: repl
  namespace: $NS
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    stdin: true
    stdinOnce: true
    command: ["/bin/sh", "-c", "while read line; do echo \"got \$line\"; done; echo bye"]
YAML
check "apply the pods" -- k apply -f "$WORK/pods.yaml"
check "the pods are Ready" -- k -n $NS wait --for=condition=Ready pod/web pod/waiter pod/repl --timeout=$T

echo "== logs -f"
k -n $NS logs -f waiter >"$WORK/follow.log" 2>&1 &
FOLLOW=$!
eventually "logs -f prints what was written before" 60 -- grep -q started "$WORK/follow.log"
touch "$WORK/go"
eventually "logs -f follows a line written later" 60 -- grep -q after-go "$WORK/follow.log"
check "logs -f is still following" -- kill -0 $FOLLOW
kill $FOLLOW 2>/dev/null; wait $FOLLOW 2>/dev/null

echo "== cp"
printf 'hello from kubectl cp\n' >"$WORK/index.html"
check "cp a file into the pod" -- k cp "$WORK/index.html" "$NS/web:$WWW/index.html"
check "exec reads the copied file" -- k -n $NS exec web -- /bin/busybox cat "$WWW/index.html"
contains "the file arrived whole" "hello from kubectl cp"
mkdir -p "$WWW/dir/sub" && printf 'a\n' >"$WWW/dir/a.txt" && printf 'b\n' >"$WWW/dir/sub/b.txt"
check "cp a directory out of the pod" -- k cp "$NS/web:$WWW/dir" "$WORK/back"
check "the directory came back with its tree" -- diff -r "$WWW/dir" "$WORK/back"

echo "== port-forward"
k -n $NS port-forward pod/web ":$PORT" >"$WORK/pf.log" 2>&1 &
PF=$!
eventually "port-forward reports its local port" 60 -- grep -qE "Forwarding from 127.0.0.1:[0-9]+ -> $PORT" "$WORK/pf.log"
LOCAL=$(grep -oE "127.0.0.1:[0-9]+ -> $PORT" "$WORK/pf.log" | head -1 | sed -E 's/127.0.0.1:([0-9]+) .*/\1/')
check "an HTTP GET through the tunnel" -- /bin/busybox wget -qO- "http://127.0.0.1:$LOCAL/index.html"
contains "the page came through the tunnel" "hello from kubectl cp"
check "a second connection over the same port-forward" -- /bin/busybox wget -qO- "http://127.0.0.1:$LOCAL/index.html"
contains "the second page came through too" "hello from kubectl cp"
check_fails "a missing page is a 404 through the tunnel" -- /bin/busybox wget -qO- "http://127.0.0.1:$LOCAL/missing.html"
kill $PF 2>/dev/null; wait $PF 2>/dev/null

echo "== proxy to a pod"
k proxy --port=0 >"$WORK/proxy.out" 2>&1 &
PROXY=$!
eventually "kubectl proxy starts" 60 -- grep -q "Starting to serve on" "$WORK/proxy.out"
PROXY_ADDR=$(sed -n 's/^Starting to serve on //p' "$WORK/proxy.out" | head -1)
check "curl a pod's page through kubectl proxy" -- curl -sf "http://$PROXY_ADDR/api/v1/namespaces/$NS/pods/web:$PORT/proxy/index.html"
contains "the pod's page came through the proxy" "hello from kubectl cp"
kill $PROXY 2>/dev/null; wait $PROXY 2>/dev/null

echo "== attach"
check "attach -i feeds stdin and streams the output" -- bash -c "printf 'hello attach\n' | $KUBECTL -n $NS attach -i repl -c main"
contains "the process read the line" "got hello attach"
check "stdinOnce: the container ended when attach detached" -- k -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/repl --timeout=$T
check "its log has the whole conversation" -- k -n $NS logs repl
contains "the log has the line" "got hello attach"
contains "the log has the goodbye" "bye"

echo "== run -i --rm"
check "run -i --rm reads stdin and cleans up" -- bash -c "printf 'ping\n' | $KUBECTL -n $NS run once -i --rm --restart=Never --image=busybox --command -- /bin/sh -c 'read l; echo \"read \$l\"'"
contains "run -i printed the output" "read ping"
contains "run --rm deleted the pod" 'pod "once" deleted'

echo "== clean up"
check "delete the namespace" -- k delete namespace $NS --wait=true --timeout=$T
eventually "the namespace is gone" 120 -- bash -c "! $KUBECTL get namespace $NS >/dev/null 2>&1"

finish
