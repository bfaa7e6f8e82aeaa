"""``python -m schnitzel_bringup.zenoh_router --listen tcp/ADDRESS:7447``: a Zenoh router for
``zenoh: {mode: client, router: ...}`` graphs (docs/multi-host.md). Any Zenoh router (zenohd)
does the same; this one needs nothing beyond the eclipse-zenoh package schnitzel pins."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="schnitzel_bringup.zenoh_router", description=__doc__)
    ap.add_argument("--listen", action="append", required=True, help="endpoint, e.g. tcp/10.0.0.1:7447")
    a = ap.parse_args(argv)
    import zenoh

    cfg = zenoh.Config()
    cfg.insert_json5("mode", json.dumps("router"))
    cfg.insert_json5("listen/endpoints", json.dumps(a.listen))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    try:
        session = zenoh.open(cfg)
    except Exception as exc:  # noqa: BLE001 - e.g. the address is not this machine's
        print(f"zenoh router: cannot listen on {', '.join(a.listen)}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: done.set())
    print(f"zenoh router listening on {', '.join(a.listen)}", flush=True)
    done.wait()
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
