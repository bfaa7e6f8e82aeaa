"""Topic templates and static config checks of the broker sinks (no broker needed)."""
import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.sink_kafka import check_config as kafka_check
from schnitzel_core.sink_mqtt import check_config as mqtt_check, parse_url
from schnitzel_core.sink_topics import TopicError, kafka_template, mqtt_template


def pkt(stream="cam0", kind="event", **meta):
    return Packet(stream_id=stream, seq=7, kind=kind, meta={k: str(v) for k, v in meta.items()})


def test_mqtt_template_renders_fields_and_meta():
    t = mqtt_template("fleet/{meta.site}/{stream_id}/{kind}/{seq}")
    assert t.render(pkt(site="dock")) == "fleet/dock/cam0/event/7"
    assert t.fields == ["meta.site", "stream_id", "kind", "seq"]
    assert mqtt_template("fixed/topic").render(pkt()) == "fixed/topic"


@pytest.mark.parametrize("template, words", [
    ("fleet/#", "'#'"), ("fleet/+/x", "'+'"), ("fleet/{nope}", "unknown field {nope}"),
    ("fleet/{kind", "unbalanced"), ("", "empty"), ("$SYS/x", "reserved"),
])
def test_mqtt_template_refuses_what_a_broker_would(template, words):
    with pytest.raises(TopicError) as ei:
        mqtt_template(template)
    assert words in str(ei.value)


def test_mqtt_render_refuses_a_packet_that_cannot_fill_the_topic():
    t = mqtt_template("fleet/{meta.site}/{stream_id}")
    with pytest.raises(TopicError, match="no meta 'site'"):
        t.render(pkt())
    with pytest.raises(TopicError, match="'#'"):
        t.render(pkt(stream="cam#1", site="a"))


def test_kafka_template_rules():
    assert kafka_template("fleet.{kind}").render(pkt(kind="person_entered")) == "fleet.person_entered"
    with pytest.raises(TopicError, match="'/'"):
        kafka_template("fleet/{kind}")
    with pytest.raises(TopicError, match="1-249"):
        kafka_template("fleet.{kind}").render(pkt(kind="a b"))


def test_mqtt_url_and_config_problems_name_the_parameter(tmp_path):
    assert parse_url("mqtts://broker.local") == {"host": "broker.local", "port": 8883, "tls": True}
    assert parse_url("mqtt://127.0.0.1:1884")["port"] == 1884
    probs = mqtt_check({"url": "http://x", "topic": "a/#", "ca_file": str(tmp_path / "missing.pem"),
                        "client_cert_env": "CERT"})
    names = [p[0] for p in probs]
    assert names == ["url", "topic", "ca_file", "ca_file", "client_cert_env"], probs   # missing, and not mqtts://
    assert mqtt_check({"url": "mqtt://user:pw@h", "topic": "t"})[0][1].startswith("mqtt sink: credentials")
    assert mqtt_check({"url": "mqtt://127.0.0.1", "topic": "fleet/{kind}"}) == []


def test_kafka_config_keeps_the_guarantee_and_secrets_out_of_the_file():
    probs = kafka_check({"bootstrap_servers": "k1:9092", "topic": "t",
                         "config": {"acks": "1", "enable.idempotence": False, "sasl.password": "x"}})
    text = " ".join(p[1] for p in probs)
    assert "acks" in text and "enable.idempotence" in text and "sasl.password" in text
    assert kafka_check({"bootstrap_servers": "k1", "topic": "t"})[0][0] == "bootstrap_servers"
    assert kafka_check({"bootstrap_servers": "k1:9092,k2:9092", "topic": "fleet.{kind}"}) == []
