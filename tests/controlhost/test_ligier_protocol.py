"""Dispatcher behaviour from the specification's MUST/SHOULD lists and edge cases (§4.3, §5)."""

from __future__ import annotations

from km3mon.controlhost import Message, encode_frame, query_status
from tests.conftest import Ligier, subscribers, wait_subscribed, wait_until
from tests.controlhost.rawclient import RawClient

# Subscriptions and publications travel on different connections: a test publishes only
# after the ligier itself reports the subscription (wait_subscribed), never after a sleep.


def nicknames(port: int) -> list[str | None]:
    return [name for name, _ in subscribers(port)]


def subscriptions(port: int) -> list[dict[str, str]]:
    return [subscription for _, subscription in subscribers(port)]


def test_zero_length_messages_are_forwarded(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w IO_EVT")
    wait_subscribed(ligier.port, "IO_EVT")
    publisher = RawClient(ligier.port)
    publisher.frame("IO_EVT")
    publisher.frame("IO_EVT", b"x")
    publisher.frame("IO_EVT")
    assert subscriber.read(3) == [
        Message("IO_EVT", b""),
        Message("IO_EVT", b"x"),
        Message("IO_EVT", b""),
    ]


def test_eight_character_tags(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w IO_TSSN1 w ABCDEFGHIJ")  # the second is cut to ABCDEFGH
    wait_subscribed(ligier.port, ["IO_TSSN1", "ABCDEFGH"])
    publisher = RawClient(ligier.port)
    publisher.frame("IO_TSSN1", b"one")
    publisher.frame("ABCDEFGH", b"two")
    received = subscriber.read(2)
    assert received == [Message("IO_TSSN1", b"one"), Message("ABCDEFGH", b"two")]


def test_nul_padded_subscription_as_km3io_sends_it(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.send(encode_frame("_Subscri", b" w IO_EVT\x00\x00"))
    subscriber.send(encode_frame("_Always"))
    wait_subscribed(ligier.port, "IO_EVT")
    RawClient(ligier.port).frame("IO_EVT", b"event")
    assert subscriber.read(1) == [Message("IO_EVT", b"event")]


def test_publish_and_subscribe_on_one_connection(ligier: Ligier) -> None:
    client = RawClient(ligier.port)
    client.subscribe(b" w MSG")
    client.frame("MSG", b"to myself")
    client.frame("IO_SUM", b"to nobody")
    assert client.read(1) == [Message("MSG", b"to myself")]
    assert client.quiet_for(0.3)


def test_tag_nobody_subscribes_to_is_discarded_and_not_stored(ligier: Ligier) -> None:
    publisher = RawClient(ligier.port)
    publisher.frame("IO_OLINE", b"lost")
    wait_until(
        lambda: "IO_OLINE in 1 msg" in query_status("127.0.0.1", ligier.port),
        what="the ligier to count the message",
        show=lambda: query_status("127.0.0.1", ligier.port),
    )
    late = RawClient(ligier.port)
    late.subscribe(b" w IO_OLINE")
    assert late.quiet_for(0.3)
    assert "IO_OLINE in 1 msg" in query_status("127.0.0.1", ligier.port)


def test_forwarded_prefix_is_normalised(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w MSG")
    wait_subscribed(ligier.port, "MSG")
    publisher = RawClient(ligier.port)
    publisher.send(b"MSG\x00junk" + (2).to_bytes(4, "big") + b"\xde\xad\xbe\xef" + b"hi")
    subscriber.sock.settimeout(5)
    raw = subscriber.sock.recv(100)
    assert raw == b"MSG\x00\x00\x00\x00\x00" + (2).to_bytes(4, "big") + bytes(4) + b"hi"


def test_gime_credits_without_always(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w IO_EVT", always=False)
    wait_subscribed(ligier.port, "IO_EVT")
    publisher = RawClient(ligier.port)
    for index in range(5):
        publisher.frame("IO_EVT", bytes([index]))
    assert subscriber.quiet_for(0.3), "no credit, no delivery"
    subscriber.frame("_Gime")
    subscriber.frame("_Gime")
    assert subscriber.read(2) == [Message("IO_EVT", b"\x00"), Message("IO_EVT", b"\x01")]
    assert subscriber.quiet_for(0.3)
    subscriber.frame("_Always")  # the rest follows, oldest first
    assert [m.payload for m in subscriber.read(5)] == [bytes([i]) for i in range(5)]


def test_repeated_subscription_replaces(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w IO_EVT")
    subscriber.subscribe(b" w IO_SUM")
    wait_until(
        lambda: subscriptions(ligier.port) == [{"IO_SUM": "w"}],
        what="IO_SUM replacing IO_EVT",
        show=lambda: subscribers(ligier.port),
    )
    publisher = RawClient(ligier.port)
    publisher.frame("IO_EVT", b"old tag")
    publisher.frame("IO_SUM", b"new tag")
    assert subscriber.read(1) == [Message("IO_SUM", b"new tag")]
    assert subscriber.quiet_for(0.3)
    subscriber.subscribe(b"")  # empty subscription: unsubscribe from everything
    wait_until(
        lambda: not any(subscriptions(ligier.port)),
        what="no subscription left",
        show=lambda: subscribers(ligier.port),
    )
    publisher.frame("IO_SUM", b"after unsubscribe")
    assert subscriber.quiet_for(0.3)


def test_merge_switch_keeps_earlier_tags(start_ligier) -> None:
    ligier = start_ligier("--merge-subscriptions")
    subscriber = RawClient(ligier.port)
    subscriber.subscribe(b" w IO_EVT\x00\x00")  # KM3io.jl: one _Subscri per tag
    subscriber.subscribe(b" w IO_SUM\x00\x00")
    wait_subscribed(ligier.port, ["IO_EVT", "IO_SUM"])
    publisher = RawClient(ligier.port)
    publisher.frame("IO_EVT", b"1")
    publisher.frame("IO_SUM", b"2")
    assert subscriber.read(2) == [Message("IO_EVT", b"1"), Message("IO_SUM", b"2")]


def test_born_and_died_with_myid(ligier: Ligier) -> None:
    watcher = RawClient(ligier.port)
    watcher.subscribe(b"a Born a Died")
    wait_subscribed(ligier.port, ["Born", "Died"])
    monitor = RawClient(ligier.port)
    monitor.frame("_MyId", b"CALOMON")
    monitor.frame("_MyId", b"RENAMED\x00ignored")
    wait_until(
        lambda: "RENAMED" in nicknames(ligier.port),
        what="the second nickname",
        show=lambda: subscribers(ligier.port),
    )
    monitor.close()
    assert watcher.read(4) == [
        Message("Born", b"CALOMON"),
        Message("Died", b"CALOMON"),
        Message("Born", b"RENAMED"),
        Message("Died", b"RENAMED"),
    ]


def test_unique_id_refuses_a_second_holder(ligier: Ligier) -> None:
    first = RawClient(ligier.port)
    first.frame("_UniqueI", b"mirror")
    wait_until(
        lambda: "mirror" in nicknames(ligier.port),
        what="the first holder of the nickname",
        show=lambda: subscribers(ligier.port),
    )
    second = RawClient(ligier.port)
    second.frame("_UniqueI", b"mirror")
    assert second.closed_by_peer()
    where = RawClient(ligier.port)
    where.frame("_WhereIs", b"mirror")
    assert where.read(1) == [Message("_WhereIs", b"127.0.0.1")]
    assert "nickname b'mirror' is already in use" in ligier.log


def test_client_sent_born_is_a_wrong_header(ligier: Ligier) -> None:
    impostor = RawClient(ligier.port)
    impostor.frame("Born", b"fake")
    assert impostor.closed_by_peer()
    assert "clients may not send 'Born'" in ligier.log


def test_consumed_control_tags_are_not_forwarded(ligier: Ligier) -> None:
    listener = RawClient(ligier.port)
    listener.subscribe(b" w _Version w _Debug+ w _StopDis")
    wait_subscribed(ligier.port, ["_Version", "_Debug+", "_StopDis"])
    client = RawClient(ligier.port)
    client.frame("_Version", b"1.8")
    client.frame("_Debug+")
    client.frame("_StopDis")  # remote stop is off by default
    assert listener.quiet_for(0.3)
    assert ligier.process.alive()


def test_show_status_reports_counters_and_closes(ligier: Ligier) -> None:
    subscriber = RawClient(ligier.port)
    subscriber.frame("_MyId", b"dom_rates")
    subscriber.subscribe(b" w IO_SUM")
    wait_subscribed(ligier.port, "IO_SUM", name="dom_rates")
    RawClient(ligier.port).frame("IO_SUM", b"s" * 100)
    subscriber.read(1)
    report = query_status("127.0.0.1", ligier.port)
    assert "IO_SUM   in 1 msg / 116 B, out 1 msg / 116 B, dropped 0, subscribers 1" in report
    assert "'dom_rates'" in report and "subscription [w IO_SUM]" in report


def test_sigterm_shuts_down_cleanly(ligier: Ligier) -> None:
    RawClient(ligier.port).subscribe(b" w MSG")
    assert ligier.process.stop() == 0
    assert "ligier stopped" in ligier.log


def test_periodic_statistics_at_debug_level_one(start_ligier) -> None:
    ligier = start_ligier("--stats-interval", "0.5")
    RawClient(ligier.port).frame("IO_EVT", b"counted")
    wait_until(lambda: "IO_EVT   in 1 msg" in ligier.log, what="a statistics report")
    assert "statistics" in ligier.log
