#!/usr/bin/env bash
# Phase-C demo, one command: run a graph, replace its policy node once with no restart, and
# show that the container kept its PID, no sequence number went missing and the new policy
# took over.   Usage: examples/hot_swap/run.sh   (env: HOT_SWAP_DIR, HOT_SWAP_RATE_HZ, ROS_DOMAIN_ID)
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export HOT_SWAP_DIR="${HOT_SWAP_DIR:-$(mktemp -d /tmp/schnitzel_hot_swap.XXXXXX)}"
export HOT_SWAP_RATE_HZ="${HOT_SWAP_RATE_HZ:-20}"
mkdir -p "$HOT_SWAP_DIR"
rm -f "$HOT_SWAP_DIR/events.jsonl" "$HOT_SWAP_DIR"/queue.db*
GRAPH=examples/hot_swap/graph.yaml
EVENTS="$HOT_SWAP_DIR/events.jsonl"

echo "[hot_swap] running $GRAPH (output: $EVENTS, ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0})"
schnitzel run "$GRAPH" --run-dir "$HOT_SWAP_DIR/run" --quiet >"$HOT_SWAP_DIR/run.log" 2>&1 &
RUN=$!
stop_graph() {
  if kill -0 "$RUN" 2>/dev/null; then
    kill -INT "$RUN" 2>/dev/null || true
    wait "$RUN" 2>/dev/null || true
  fi
}
trap stop_graph EXIT

lines() { [ -f "$EVENTS" ] && wc -l <"$EVENTS" || echo 0; }
# the container's PID as the lifecycle manager reports it (status file of this run)
container_pid() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containers"]["main"]["pid"] or "")' \
    "$HOT_SWAP_DIR/run/status.json" 2>/dev/null || true
}
for _ in $(seq 1 300); do
  [ "$(lines)" -ge 20 ] && [ -n "$(container_pid)" ] && break
  kill -0 "$RUN" 2>/dev/null || { echo "[hot_swap] the graph stopped:"; tail -20 "$HOT_SWAP_DIR/run.log"; exit 1; }
  sleep 0.2
done
[ "$(lines)" -ge 20 ] || { echo "[hot_swap] no output after 60 s:"; tail -20 "$HOT_SWAP_DIR/run.log"; exit 1; }
PID_BEFORE="$(container_pid)"
echo "[hot_swap] policy v1 (rules) is serving; container pid $PID_BEFORE; $(lines) events so far"

echo "[hot_swap] schnitzel replace hot_swap policy --plugin map --params 'constants={\"policy\": \"v2\"}'"
rc=0
# the lifecycle manager serves /hot_swap/_manager/replace_node once the graph is active
schnitzel replace hot_swap policy --plugin map --params 'constants={"policy": "v2"}' --wait 15 || rc=$?
sleep 2
PID_AFTER="$(container_pid)"
stop_graph
trap - EXIT

python3 - "$EVENTS" "$PID_BEFORE" "$PID_AFTER" "$rc" <<'PY'
import json, sys
path, before, after, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
recs = []
for line in open(path):
    try:
        recs.append(json.loads(line))
    except ValueError:
        pass
seqs = [r["seq"] for r in recs]
missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs)) if seqs else []
v1 = sum(1 for r in recs if r.get("meta", {}).get("policy") == "v1")
v2 = sum(1 for r in recs if (r.get("payload") or {}).get("policy") == "v2")
keys = {}
for r in recs:
    keys.setdefault(r["seq"], set()).add(r["idempotency_key"])
dups = len(seqs) - len(set(seqs))
print(f"[hot_swap] {len(recs)} events: {v1} by policy v1, {v2} by policy v2; "
      f"missing sequence numbers: {len(missing)}; duplicates: {dups} "
      f"({'same' if all(len(k) == 1 for k in keys.values()) else 'DIFFERENT'} idempotency keys)")
print(f"[hot_swap] container pid before {before or '?'}, after {after or '?'}: "
      f"{'unchanged' if before and before == after else 'CHANGED'}")
ok = rc == 0 and not missing and v2 > 0 and before and before == after
print("[hot_swap] " + ("OK: replaced once with no restart and nothing missed" if ok else
                       f"FAILED (replace exit code {rc})"))
sys.exit(0 if ok else 1)
PY
