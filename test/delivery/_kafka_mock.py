"""Test helper: host librdkafka's built-in mock cluster (test.mock.num.brokers) in its own process.

Prints one JSON line {"bootstrap": "127.0.0.1:PORT,..."} and keeps the cluster up until stdin
closes. The tests freeze this process (SIGSTOP) to make the brokers stop answering, and thaw it
(SIGCONT) to bring them back: a broker outage that clients see over real TCP.
"""
import json
import sys

from confluent_kafka import Producer


def main() -> int:
    brokers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    holder = Producer({"test.mock.num.brokers": brokers, "bootstrap.servers": "", "log_level": 3})
    md = holder.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in sorted(md.brokers.values(), key=lambda b: b.id))
    print(json.dumps({"bootstrap": bootstrap}), flush=True)
    for _ in sys.stdin:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
