"""Live sources never reuse an epoch across process restarts; file replays keep theirs."""
import multiprocessing

import pytest

from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.base import EpochLedger
from schnitzel_nodes.plugins.sources.video import VideoSourceLogic


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHNITZEL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _live_camera(graph="lobby", node="cam"):
    # configure only: the RTSP address is never opened (that happens in the source's thread)
    return LogicHarness(VideoSourceLogic, {"uri": "rtsp://127.0.0.1:9/none"}, node_id=node,
                        graph=graph, activate=False)


def test_restarted_live_camera_starts_a_new_epoch(state_dir):
    first = _live_camera()
    first_epoch = first.logic.epoch
    first_key = first.logic.next_packet("video.frame").idempotency_key
    first.logic.cleanup()

    second = _live_camera()  # the same stream after a container restart
    assert second.logic.epoch == first_epoch + 1
    assert second.logic.next_packet("video.frame").idempotency_key != first_key
    assert (state_dir / "epochs.db").exists()


def test_reconnect_epochs_are_remembered_across_restarts(state_dir):
    cam = _live_camera()
    cam.logic.bump_epoch()
    cam.logic.bump_epoch()
    reached = cam.logic.epoch
    cam.logic.cleanup()
    assert _live_camera().logic.epoch == reached + 1


def test_streams_and_graphs_have_separate_epochs(state_dir):
    a = _live_camera(node="cam_a")
    b = _live_camera(node="cam_b")
    other_graph = _live_camera(graph="dock", node="cam_a")
    assert a.logic.epoch == b.logic.epoch == other_graph.logic.epoch == 0


def test_file_replay_keeps_its_configured_epoch(state_dir, tmp_path):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    for _ in range(2):  # replaying a file must repeat its keys so they are absorbed downstream
        h = LogicHarness(VideoSourceLogic, {"uri": path, "epoch": 3}, node_id="replay", activate=False)
        assert h.logic.epoch == 3


def _claim(path, n, out):
    ledger = EpochLedger(path)
    out.put([ledger.claim("g/cam") for _ in range(n)])
    ledger.close()


def test_concurrent_claims_never_hand_out_the_same_epoch(tmp_path):
    path = str(tmp_path / "epochs.db")
    EpochLedger(path).close()  # create the file before the race
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_claim, args=(path, 20, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [e for _ in procs for e in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert sorted(claimed) == list(range(60))


def test_unwritable_state_dir_falls_back_to_a_clock_epoch(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SCHNITZEL_STATE_DIR", str(blocker / "state"))
    cam = _live_camera()
    assert cam.logic.epoch > 1_600_000_000  # seconds since 1970: grows across restarts
