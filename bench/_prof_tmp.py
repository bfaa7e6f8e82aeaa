import cProfile, pstats, os, sys, tempfile, time
sys.path.insert(0, "bench")
from bench_store import packets
from schnitzel_core.store import DurableStore
d = tempfile.mkdtemp(dir="/tmp")
pk = packets(20000, "p")
s = DurableStore(os.path.join(d, "s.db"), synchronous="FULL")
def run():
    prev = []
    for i in range(0, len(pk), 100):
        s.write(pk[i:i+100], None, [(prev, "*")] if prev else ())
        prev = [r.id for r in s.lease(100)]
    s.ack(prev)
t=time.perf_counter(); cProfile.run("run()", "/tmp/p.out"); print(len(pk)/(time.perf_counter()-t))
pstats.Stats("/tmp/p.out").sort_stats("tottime").print_stats(25)
