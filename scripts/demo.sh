#!/usr/bin/env bash
# The main demo: set up, then run examples/edge_camera for a bounded time and print a summary.
#
#   scripts/demo.sh                      # 30 s of the dock camera, reference backend on 127.0.0.1
#   scripts/demo.sh --duration 60        # run longer
#   SCHNITZEL_CAMERA=rtsp://user:pass@192.168.1.20:554/stream1 scripts/demo.sh   # a live camera
#   SCHNITZEL_BACKEND_URL=https://events.example.com/events scripts/demo.sh      # a real backend
#   SCHNITZEL_MODEL=/models/yolov5n.onnx scripts/demo.sh  # ONNX detector instead of motion (graph_onnx.yaml)
#
# What it does: scripts/setup.sh (idempotent), generates the demo video at the first run
# (.cache/demo/edge_camera.mp4, drawn with OpenCV, nothing downloaded), starts the reference
# backend (`schnitzel backend`) on a free port of 127.0.0.1 unless SCHNITZEL_BACKEND_URL is
# set, runs `schnitzel run examples/edge_camera/graph.yaml --duration N --report
# runs/<stamp>/report.json`, stops the backend, renders the report page and prints the summary.
# Everything it writes goes under runs/<stamp>/ (gitignored).
#
# Options: --duration S (default 30, or SCHNITZEL_DEMO_DURATION), --no-setup (skip scripts/setup.sh),
# --out DIR (instead of runs/<stamp>). Exit status 0 when the run ended ok or degraded and every
# event the graph produced reached both the backend and the JSONL file; 1 otherwise.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${SCHNITZEL_DEMO_DURATION:-30}"
SETUP=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:-}"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --no-setup) SETUP=0; shift ;;
    --out) OUT="${2:-}"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$DURATION" in
  ''|*[!0-9.]*|.*) echo "demo: --duration needs a number of seconds, got '$DURATION'" >&2; exit 2 ;;
esac

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { bold "==> $*"; }
T0=$(date +%s)

# ---- 1. setup ---------------------------------------------------------------------------
if [ "$SETUP" = 1 ]; then
  step "[1/5] setting up (scripts/setup.sh; the first run installs ROS 2 wheels and builds, later runs take seconds)"
  scripts/setup.sh
fi
# shellcheck disable=SC1091
source scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export PYTHONUNBUFFERED=1

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RUN="${OUT:-runs/$STAMP}"
mkdir -p "$RUN"
RUN="$(cd "$RUN" && pwd)"
export SCHNITZEL_DATA="$RUN"

# ---- 2. the video -----------------------------------------------------------------------
GRAPH=examples/edge_camera/graph.yaml
if [ -n "${SCHNITZEL_MODEL:-}" ]; then
  GRAPH=examples/edge_camera/graph_onnx.yaml
  [ -f "$SCHNITZEL_MODEL" ] || { echo "demo: SCHNITZEL_MODEL=$SCHNITZEL_MODEL is not a file" >&2; exit 2; }
fi
if [ -z "${SCHNITZEL_CAMERA:-}" ]; then
  step "[2/5] demo video (.cache/demo/edge_camera.mp4)"
  python examples/edge_camera/make_video.py .cache/demo/edge_camera.mp4
  CAMERA_DESC="the generated demo video (.cache/demo/edge_camera.mp4, looping)"
else
  step "[2/5] camera: $SCHNITZEL_CAMERA"
  CAMERA_DESC="$SCHNITZEL_CAMERA"
fi

# ---- 3. backend -------------------------------------------------------------------------
BACKEND_PID=""
cleanup() {
  if [ -n "$BACKEND_PID" ] && kill -0 "$BACKEND_PID" 2>/dev/null; then
    kill -TERM "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
  fi
  BACKEND_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -z "${SCHNITZEL_BACKEND_URL:-}" ]; then
  step "[3/5] starting the reference backend on 127.0.0.1"
  PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # its own session: a Ctrl-C meant for the run must not stop the backend before the queue drained
  SETSID=""; command -v setsid >/dev/null 2>&1 && SETSID=setsid
  $SETSID schnitzel backend --host 127.0.0.1 --port "$PORT" --db "$RUN/backend.db" >"$RUN/backend.log" 2>&1 &
  BACKEND_PID=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$RUN/backend.log" 2>/dev/null && break
    kill -0 "$BACKEND_PID" 2>/dev/null || { echo "demo: the backend did not start:" >&2; cat "$RUN/backend.log" >&2; exit 1; }
    sleep 0.1
  done
  export SCHNITZEL_BACKEND_URL="http://127.0.0.1:$PORT/events"
  BACKEND_DESC="the reference backend at $SCHNITZEL_BACKEND_URL (schnitzel backend, db $RUN/backend.db)"
  echo "    $SCHNITZEL_BACKEND_URL"
else
  step "[3/5] backend: $SCHNITZEL_BACKEND_URL (not started here)"
  BACKEND_DESC="$SCHNITZEL_BACKEND_URL"
fi

# ---- 4. run -----------------------------------------------------------------------------
step "[4/5] schnitzel run $GRAPH --duration $DURATION (start-up takes a few seconds; a status line follows)"
echo "    (Ctrl-C stops it early: the graph shuts down in order and the summary still follows)"
set +e
schnitzel run "$GRAPH" --duration "$DURATION" --report "$RUN/report.json" --run-dir "$RUN/logs" &
RUN_CHILD=$!
trap 'kill -INT "$RUN_CHILD" 2>/dev/null' INT
trap 'kill -TERM "$RUN_CHILD" 2>/dev/null' TERM
wait "$RUN_CHILD"
RUN_RC=$?
while kill -0 "$RUN_CHILD" 2>/dev/null; do   # a signal interrupted `wait`: the run is still stopping
  wait "$RUN_CHILD"
  RUN_RC=$?
done
trap 'exit 130' INT TERM
set -e

# ---- 5. summary -------------------------------------------------------------------------
step "[5/5] summary"
if [ -f "$RUN/report.json" ]; then
  schnitzel report "$RUN/report.json" --html "$RUN/report.html" --quiet 2>/dev/null || true
fi
set +e
python - "$RUN" "${BACKEND_PID:+ref}" "$SCHNITZEL_BACKEND_URL" "$RUN_RC" "$CAMERA_DESC" "$BACKEND_DESC" \
  "$GRAPH" "$(( $(date +%s) - T0 ))" <<'PY'
import json, os, sys, urllib.request

run, ref, url, run_rc, camera, backend_desc, graph, took = sys.argv[1:9]
run_rc = int(run_rc)
rep_path = os.path.join(run, "report.json")
try:
    rep = json.load(open(rep_path, encoding="utf-8"))
except (OSError, ValueError) as exc:
    print(f"  no run report ({exc}); process logs: {run}/logs")
    sys.exit(1)
nodes = rep.get("nodes", {})

def node(plugin, prefer=None):
    ids = [k for k, v in nodes.items() if v.get("plugin") == plugin]
    return nodes[prefer] if prefer in ids else (nodes[ids[0]] if ids else {})

def counter(n, name, default=0):
    try:
        return int(float((n.get("counters") or {}).get(name, default)))
    except (TypeError, ValueError):
        return default

cam, det = node("video_source"), (node("motion_detector") or node("onnx_model"))
events, queue, http, jsonl = node("event_builder"), node("durable_queue"), node("http_sink"), node("jsonl_sink")
jsonl_path = os.path.join(run, "events.jsonl")
keys_jsonl = []
try:
    with open(jsonl_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                keys_jsonl.append(json.loads(line)["idempotency_key"])
except (OSError, ValueError, KeyError):
    pass
stats, keys_backend = {}, None
if ref:   # the reference backend answers /stats and /keys; a real backend need not
    base = url.rsplit("/", 1)[0]
    try:
        stats = json.load(urllib.request.urlopen(base + "/stats", timeout=5))
        keys_backend = set(json.load(urllib.request.urlopen(base + "/keys", timeout=5))["keys"])
    except Exception as exc:  # noqa: BLE001
        print(f"  (could not read the backend's statistics: {exc})")
depths = [s["nodes"].get("queue", {}).get("depth") for s in rep.get("timeline", [])]
depths = [d for d in depths if isinstance(d, int)]
lat = http.get("latency_ms", {})
tracks, types = set(), {}
try:
    with open(jsonl_path, encoding="utf-8") as f:
        for line in f:
            ev = json.loads(line)["payload"]
            tracks.add(ev.get("track_id"))
            types[ev.get("event_type")] = types.get(ev.get("event_type"), 0) + 1
except (OSError, ValueError, KeyError, AttributeError):
    pass
tracks.discard(None)

status = rep.get("status", "?")
colour = {"ok": "32", "degraded": "33", "error": "31"}.get(status, "0")
tty = sys.stdout.isatty()
badge = f"\033[1;{colour}m{status.upper()}\033[0m" if tty else status.upper()
rows = [
    ("run", f"{badge} after {rep.get('duration_s', 0):.0f} s ({rep.get('stopped_by', '?')}), "
            f"{len(nodes)} nodes in {len(rep.get('containers', {}))} containers"),
    ("frames in", f"{cam.get('packets_out', 0)} from {camera}"),
    ("detections", f"{det.get('packets_out', 0)} detector outputs ({det.get('drops', 0)} frames skipped "
                   f"latest-only), {len(tracks)} tracks crossed the dock zone"),
    ("events", f"{events.get('packets_out', 0)} zone events built ({types.get('zone_enter', 0)} enter, "
               f"{types.get('zone_exit', 0)} exit), {queue.get('packets_in', 0)} handed to the durable queue"),
    ("delivered", f"{counter(http, 'delivered')} to the backend, {counter(jsonl, 'delivered')} to the JSONL file"
                  + (f"; backend stores {stats.get('unique_keys')} unique events" if stats else "")),
    ("duplicates absorbed", f"{stats.get('duplicates', 0) + counter(queue, 'duplicates')} "
                            f"(resends the backend recognised by idempotency key"
                            + (")" if stats else "; a real backend reports its own)")),
    ("queue depth", f"{counter(queue, 'depth')} rows waiting at the end (max {max(depths) if depths else 0} "
                    f"during the run), {counter(queue, 'dead')} dead-lettered"),
    ("latency p50 / p99", (f"{lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f} ms from capture to the HTTP sink"
                           if http.get("packets_in") else "n/a (no event reached the HTTP sink)")),
]
if not events.get("packets_out"):
    rows.append(("note", "no event this run: nothing entered the dock zone. With your own camera or model, "
                         "edit the zone polygon (pixels) and the detector's classes in " + graph))
agree = None
if keys_backend is not None:
    agree = keys_backend == set(keys_jsonl) and len(keys_jsonl) == len(set(keys_jsonl))
    rows.append(("backend == JSONL", ("yes" if agree else "NO") +
                 f": {len(keys_backend)} keys at the backend, {len(set(keys_jsonl))} in the JSONL"))
for p in rep.get("problems", []):
    rows.append(("problem", p))
w = max(len(k) for k, _ in rows)
print()
for k, v in rows:
    print(f"  {k:<{w}}  {v}")
html = os.path.join(run, "report.html")
print(f"""
  run report   {rep_path}
  report page  {html if os.path.exists(html) else '(not written)'}   (open it in a browser)
  events JSONL {jsonl_path}
  logs         {run}/logs
  took {took} s in all; graph {graph}

  Next:
    live camera:  SCHNITZEL_CAMERA=rtsp://user:pass@192.168.1.20:554/stream1 scripts/demo.sh
    real backend: SCHNITZEL_BACKEND_URL=https://events.example.com/events scripts/demo.sh
    by hand:      source scripts/env.sh && schnitzel run {graph} --duration 60 --report run.json
                  schnitzel report run.json --html run.html
    annotated frames while it runs: ros2 run rqt_image_view rqt_image_view /edge_camera/annotated
""")
ok = status in ("ok", "degraded") and agree is not False and run_rc in (0, 3)
sys.exit(0 if ok else 1)
PY
SUM_RC=$?
set -e
cleanup
exit "$SUM_RC"
