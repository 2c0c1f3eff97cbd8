# The checks the kubectl end-to-end scripts share (sourced by e2e.sh and e2e-process.sh):
# each prints one `ok`/`FAIL` line, counts into $checks and $failures, and keeps the last
# command's output in $OUT. `finish` prints the tally and sets the exit code.
#
# Each check waits for a positive signal with a generous timeout; nothing sleeps and then
# asserts that something did not happen.

KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || { echo "FAIL: kubectl not found ($KUBECTL)"; exit 1; }
: "${KUBECONFIG:?KUBECONFIG must point at the cluster}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
T=120s
failures=0
checks=0

k() { "$KUBECTL" "$@"; }

# check NAME -- CMD...: CMD must exit 0; its output is kept in $OUT.
check() {
  local name=$1; shift; [ "$1" = -- ] && shift
  checks=$((checks + 1))
  local rc=0
  OUT=$("$@" 2>&1) || rc=$?
  if [ $rc = 0 ]; then echo "ok   $name"; return 0; fi
  failures=$((failures + 1)); echo "FAIL $name: exit $rc from: $*"; echo "$OUT" | sed 's/^/     | /' | head -40
  return 1
}
# check_fails NAME -- CMD...: CMD must exit non-zero.
check_fails() {
  local name=$1; shift; [ "$1" = -- ] && shift
  checks=$((checks + 1))
  if OUT=$("$@" 2>&1); then
    failures=$((failures + 1)); echo "FAIL $name: expected a failure from: $*"; echo "$OUT" | sed 's/^/     | /' | head -20
    return 1
  fi
  echo "ok   $name"
}
# contains NAME TEXT: the last check's output contains TEXT.
contains() {
  checks=$((checks + 1))
  if grep -qF -- "$2" <<<"$OUT"; then echo "ok   $1"; return 0; fi
  failures=$((failures + 1)); echo "FAIL $1: output lacks '$2'"; echo "$OUT" | sed 's/^/     | /' | head -40
  return 1
}
# matches NAME REGEX: the last check's output matches the extended REGEX.
matches() {
  checks=$((checks + 1))
  if grep -qE -- "$2" <<<"$OUT"; then echo "ok   $1"; return 0; fi
  failures=$((failures + 1)); echo "FAIL $1: output does not match /$2/"; echo "$OUT" | sed 's/^/     | /' | head -40
  return 1
}
# eventually NAME SECONDS -- CMD...: CMD succeeds within SECONDS (polled).
eventually() {
  local name=$1 secs=$2; shift 2; [ "$1" = -- ] && shift
  local deadline=$((SECONDS + secs))
  checks=$((checks + 1))
  while :; do
    if OUT=$("$@" 2>&1); then echo "ok   $name"; return 0; fi
    if [ $SECONDS -ge $deadline ]; then
      failures=$((failures + 1)); echo "FAIL $name: not true within ${secs}s: $*"; echo "$OUT" | sed 's/^/     | /' | head -20
      return 1
    fi
    sleep 0.2
  done
}

finish() {
  echo
  echo "$checks checks, $failures failed"
  [ "$failures" = 0 ]
}
