"""Outbox (schnitzel_core.outbox): keep until the queue's commit is acknowledged, re-send
after resend_s, bounded with counted drops, durable across a restart; the wire helpers."""
from schnitzel_core.outbox import (META_SENDER, META_SEQ, AcceptedBatch, Outbox, from_ranges, sender_node,
                                   to_ranges, untag)
from schnitzel_core.packet import Packet


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def pk(i):
    return Packet.from_json("s", i, "event", {"i": i})


def test_ranges_round_trip_and_merge():
    assert to_ranges([5, 1, 2, 3, 7, 3]) == [1, 3, 5, 5, 7, 7]
    assert list(from_ranges(to_ranges([9, 10, 11, 20]))) == [9, 10, 11, 20]
    assert to_ranges([]) == []


def test_kept_until_acknowledged_then_resent_only_when_due():
    clock = Clock()
    box = Outbox("eb/out", 1, resend_s=1.0, clock=clock)
    sent = [box.add(pk(i)) for i in range(1, 6)]
    assert [p.meta[META_SEQ] for p in sent] == ["1", "2", "3", "4", "5"]
    assert sender_node(sent[0].meta[META_SENDER]) == "eb" and box.pending == 5
    assert box.due() == []                        # not yet: acks usually come within ms
    assert box.ack("q", to_ranges([1, 2, 4])) == 3
    clock.t += 1.5
    again = box.due()
    assert [p.seq for p in again] == [3, 5]       # only the unacknowledged ones
    assert box.due() == [] and box.resent == 2    # counted as sent now
    box.ack("q", to_ranges([3, 5]))
    assert box.pending == 0 and box.acked == 5


def test_resend_is_paced_by_limit_oldest_send_first():
    clock = Clock()
    box = Outbox("eb/out", resend_s=0.5, clock=clock)
    for i in range(1, 251):
        box.add(pk(i))
    clock.t += 1
    assert [p.seq for p in box.due(100)] == list(range(1, 101))
    assert [p.seq for p in box.due(100)] == list(range(101, 201))
    assert [p.seq for p in box.due(100)] == list(range(201, 251))


def test_full_outbox_drops_the_oldest_and_counts_it():
    box = Outbox("eb/out", max_packets=3)
    for i in range(1, 6):
        box.add(pk(i))
    assert box.pending == 3 and box.dropped == 2
    box.ack("q", to_ranges([1, 2, 3, 4, 5]))
    assert box.pending == 0 and box.acked == 3


def test_fan_out_to_two_queues_waits_for_both():
    box = Outbox("eb/out", 2)
    box.add(pk(1))
    assert box.ack("q1", [1, 1]) == 0 and box.pending == 1
    assert box.ack("q1", [1, 1]) == 0 and box.pending == 1   # the same queue twice is one
    assert box.ack("q2", [1, 1]) == 1 and box.pending == 0


def test_queue_side_untag_and_one_ack_per_sender():
    box = Outbox("eb/out")
    tagged = box.add(pk(7).with_meta(zone="a"))
    sender, seq, clean = untag(tagged)
    assert sender == box.sender_id and seq == 1
    assert clean.meta == {"zone": "a"} and clean.idempotency_key == tagged.idempotency_key
    plain = pk(1)
    assert untag(plain) == (None, 0, plain)
    batch = AcceptedBatch()
    for s in (1, 2, 3, 5):
        batch.add(sender, s)
    batch.add("other/out#x", 9)
    assert sorted(batch.acks()) == sorted([(sender, [1, 3, 5, 5]), ("other/out#x", [9, 9])])


def test_durable_outbox_survives_a_restart_and_keeps_its_sender_id(tmp_path):
    path = str(tmp_path / "box" / "eb.out.db")
    box = Outbox("eb/out", path=path)
    sent = [box.add(pk(i)) for i in range(1, 6)]
    box.ack("q", to_ranges([1, 2]))
    sid = box.sender_id
    del box   # as if the process died: no close()
    again = Outbox("eb/out", path=path)
    assert again.sender_id == sid and again.pending == 3
    due = again.due()                             # due at once after a restart
    assert [p.seq for p in due] == [3, 4, 5]
    assert due[0] == sent[2] and due[0].payload == sent[2].payload
    nxt = again.add(pk(6))
    assert int(nxt.meta[META_SEQ]) > 5            # sequence numbers are not reused
    again.ack("q", to_ranges([3, 4, 5, int(nxt.meta[META_SEQ])]))
    again.close()
    assert Outbox("eb/out", path=path).pending == 0


def test_memory_outbox_gets_a_new_sender_id_each_time():
    assert Outbox("eb/out").sender_id != Outbox("eb/out").sender_id


def test_resends_back_off_while_no_queue_answers_and_resume_at_once_on_an_ack():
    clock = Clock()
    box = Outbox("eb/out", resend_s=1.0, clock=clock)
    for i in range(1, 4):
        box.add(pk(i))
    rounds = []
    for _ in range(40):                 # 20 s of 0.5 s ticks, the queue down
        clock.t += 0.5
        if box.due():
            rounds.append(clock.t)
    gaps = [b - a for a, b in zip(rounds, rounds[1:])]
    assert gaps[0] == 1.0 and max(gaps) == 8.0 and gaps == sorted(gaps)   # 1, 2, 4, 8, 8 ...
    assert len(rounds) < 20 // 1        # fewer rounds than one per resend_s
    box.add(pk(4))                      # the queue is back: it acknowledges a fresh packet
    clock.t += 1.0
    box.ack("q", to_ranges([4]))
    assert [p.seq for p in box.due()] == [1, 2, 3]   # due at once, not after the backed-off interval
