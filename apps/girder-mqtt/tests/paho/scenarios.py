"""MQTT 5.0 scenarios driven by Eclipse paho-mqtt (2.x), run by tests/paho.rs.

    python3 scenarios.py PORT SCENARIO

Each scenario is a function below; it raises (and the script exits non-zero) when the broker
does not do what the spec says, and prints ``PASS <scenario>`` when it does. Every wait is
bounded (WAIT seconds); the few fixed waits are for time that must pass (an expiry) or for
something that must not happen (a message past a receive maximum).
"""

import queue
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 1883
WAIT = 20.0


def get(q, what, timeout=WAIT):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"timed out waiting for {what}") from None


def nothing(q, what, seconds):
    try:
        item = q.get(timeout=seconds)
    except queue.Empty:
        return
    raise AssertionError(f"{what}: got {item!r}")


def props(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop(message, name, default=None):
    return getattr(message.properties, name, default) if message.properties else default


class Client:
    """A paho client whose callbacks feed queues the scenario reads with timeouts."""

    def __init__(self, client_id, protocol=mqtt.MQTTv5, manual_ack=False):
        self.id = client_id
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            manual_ack=manual_ack,
        )
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.connacks = queue.Queue()
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.published = queue.Queue()
        self.disconnects = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, p: self.connacks.put((flags, rc, p))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.c.on_publish = lambda c, u, mid, rc, p: self.published.put((mid, rc))
        self.c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)
        self.started = False

    def connect(self, keepalive=60, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, ok=True,
                **connect_props):
        """Connects (the CONNECT properties as keywords); returns (flags, reason, properties).
        By default a clean start the first time only: paho reconnecting by itself resumes
        the session."""
        p = props(PacketTypes.CONNECT, **connect_props) if connect_props else None
        kw = {"properties": p} if self.c.protocol == mqtt.MQTTv5 else {}
        if self.c.protocol == mqtt.MQTTv5:
            kw["clean_start"] = clean_start
        self.c.connect(HOST, PORT, keepalive, **kw)
        if not self.started:
            self.c.loop_start()
            self.started = True
        flags, rc, p = get(self.connacks, f"{self.id}'s CONNACK")
        if ok:
            assert not rc.is_failure, f"{self.id} refused: {rc}"
        return flags, rc, p

    def subscribe(self, topic, qos=1, **options):
        """Subscribes; options are SubscribeOptions' (noLocal, retainAsPublished,
        retainHandling) and subscription_id. Returns the reason codes of the SUBACK."""
        sub_id = options.pop("subscription_id", None)
        p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id else None
        opts = SubscribeOptions(qos=qos, **options)
        rc, mid = self.c.subscribe(topic, options=opts, properties=p)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        got_mid, codes = get(self.subacks, f"{self.id}'s SUBACK")
        assert got_mid == mid, (got_mid, mid)
        for code in codes:
            assert not code.is_failure, f"{self.id} subscribe {topic}: {code}"
        return codes

    def publish(self, topic, payload, qos=1, retain=False, **publish_props):
        """Publishes and, for QoS 1 and 2, waits for the end of the flow; returns the reason
        code paho reports (the PUBACK's or the PUBCOMP's)."""
        p = props(PacketTypes.PUBLISH, **publish_props) if publish_props else None
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        if qos == 0:
            return None
        mid, rc = get(self.published, f"{self.id}'s acknowledgement of {topic}")
        assert mid == info.mid, (mid, info.mid)
        return rc

    def message(self, what="a message"):
        return get(self.messages, f"{self.id}: {what}")

    def disconnect(self, **disconnect_props):
        p = props(PacketTypes.DISCONNECT, **disconnect_props) if disconnect_props else None
        self.c.disconnect(properties=p)
        get(self.disconnects, f"{self.id}'s disconnection")
        self.c.loop_stop()
        self.started = False


def user_properties():
    sub = Client("up-sub")
    sub.connect()
    sub.subscribe("up/t")
    pub = Client("up-pub")
    pub.connect()
    pairs = [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "cødé")]
    pub.publish("up/t", b"x", UserProperty=pairs, ContentType="text/plain",
                PayloadFormatIndicator=1)
    m = sub.message()
    assert prop(m, "UserProperty") == pairs, m.properties
    assert prop(m, "ContentType") == "text/plain", m.properties
    assert prop(m, "PayloadFormatIndicator") == 1, m.properties


def request_response():
    responder = Client("rr-responder")
    responder.connect()
    responder.subscribe("rr/requests")
    requester = Client("rr-requester")
    requester.connect()
    requester.subscribe("rr/replies/requester")
    # Two requests, answered in the reverse order: the correlation data tells them apart.
    for n in (1, 2):
        requester.publish("rr/requests", f"question {n}".encode(),
                          ResponseTopic="rr/replies/requester",
                          CorrelationData=bytes([0, n, 0xFF]))
    requests = [responder.message("a request") for _ in range(2)]
    for req in reversed(requests):
        assert prop(req, "ResponseTopic") == "rr/replies/requester", req.properties
        responder.publish(prop(req, "ResponseTopic"), b"answer to " + req.payload,
                          CorrelationData=prop(req, "CorrelationData"))
    for _ in range(2):
        reply = requester.message("a reply")
        n = prop(reply, "CorrelationData")[1]
        assert reply.payload == f"answer to question {n}".encode(), reply.payload


def message_expiry():
    sub = Client("exp-sub")
    sub.connect(SessionExpiryInterval=300)
    sub.subscribe("exp/t")
    sub.disconnect()
    pub = Client("exp-pub")
    pub.connect()
    pub.publish("exp/t", b"short", MessageExpiryInterval=1)
    pub.publish("exp/t", b"long", MessageExpiryInterval=300)
    pub.publish("exp/t", b"forever")
    time.sleep(2.5)  # the first expires while the subscriber is away
    flags, _, _ = sub.connect(clean_start=False, SessionExpiryInterval=300)
    assert flags.session_present
    first = sub.message("the message that did not expire")
    assert first.payload == b"long", f"got {first.payload!r} first: an expired message came"
    left = prop(first, "MessageExpiryInterval")
    assert left is not None and 280 <= left < 300, f"what is left of its expiry: {left}"
    second = sub.message("the message without an expiry")
    assert second.payload == b"forever" and prop(second, "MessageExpiryInterval") is None
    # Live, the interval is passed on too.
    pub.publish("exp/t", b"live", MessageExpiryInterval=60)
    live = sub.message("the live message")
    assert live.payload == b"live" and 55 <= prop(live, "MessageExpiryInterval") <= 60


def subscription_identifiers():
    c = Client("si")
    c.connect()
    c.subscribe("si/+", subscription_id=7)
    c.subscribe("si/#", subscription_id=9)
    c.subscribe("plain/t")
    pub = Client("si-pub")
    pub.connect()
    # Both subscriptions match: one copy with both identifiers, or a copy for each.
    pub.publish("si/a", b"both")
    ids = []
    while sorted(ids) != [7, 9]:
        m = c.message("si/a with its identifiers")
        assert m.topic == "si/a", m.topic
        ids += prop(m, "SubscriptionIdentifier", [])
        assert len(ids) <= 2, ids
    pub.publish("si/a/b", b"one")
    m = c.message("si/a/b")
    assert (m.topic, prop(m, "SubscriptionIdentifier")) == ("si/a/b", [9]), m.properties
    pub.publish("plain/t", b"none")
    m = c.message("plain/t")
    assert m.topic == "plain/t" and prop(m, "SubscriptionIdentifier") is None, m.properties


def no_local():
    a = Client("nl-a")
    a.connect()
    a.subscribe("nl/t", noLocal=True)
    b = Client("nl-b")
    b.connect()
    b.subscribe("nl/t")
    a.publish("nl/t", b"from a")
    assert b.message().payload == b"from a"
    b.publish("nl/t", b"from b")
    assert b.message().payload == b"from b"  # b's subscription is not no-local
    got = a.message()
    assert got.payload == b"from b", f"a got its own message back: {got.payload!r}"


def retain_as_published():
    keep = Client("rap-keep")
    keep.connect()
    keep.subscribe("rap/t", retainAsPublished=True)
    clear = Client("rap-clear")
    clear.connect()
    clear.subscribe("rap/t", retainAsPublished=False)
    pub = Client("rap-pub")
    pub.connect()
    pub.publish("rap/t", b"retained", retain=True)
    pub.publish("rap/t", b"plain")
    assert [(m.payload, m.retain) for m in (keep.message(), keep.message())] == [
        (b"retained", True), (b"plain", False)]
    assert [(m.payload, m.retain) for m in (clear.message(), clear.message())] == [
        (b"retained", False), (b"plain", False)]
    pub.publish("rap/t", b"", retain=True)


def retain_handling():
    pub = Client("rh-pub")
    pub.connect()
    pub.publish("rh/t", b"kept", retain=True)
    mark = iter(range(100))

    def after_subscribe(c):
        """What the subscription brought, up to a live message published after it."""
        n = next(mark)
        pub.publish("rh/t", f"mark {n}".encode())
        got = []
        while True:
            m = c.message(f"mark {n}")
            if m.payload == f"mark {n}".encode():
                return got
            got.append((m.payload, m.retain))

    # 0: on every subscribe, new or not.
    c = Client("rh-0")
    c.connect()
    c.subscribe("rh/t", retainHandling=0)
    assert after_subscribe(c) == [(b"kept", True)]
    c.subscribe("rh/t", retainHandling=0)
    assert after_subscribe(c) == [(b"kept", True)]
    # 1: only when the subscription is new.
    c = Client("rh-1")
    c.connect()
    c.subscribe("rh/t", retainHandling=1)
    assert after_subscribe(c) == [(b"kept", True)]
    c.subscribe("rh/t", retainHandling=1)
    assert after_subscribe(c) == []
    # 2: never.
    c = Client("rh-2")
    c.connect()
    c.subscribe("rh/t", retainHandling=2)
    assert after_subscribe(c) == []


def topic_alias():
    sub = Client("ta-sub")
    sub.connect()
    sub.subscribe("ta/#")
    pub = Client("ta-pub")
    _, _, connack = pub.connect()
    assert prop_of(connack, "TopicAliasMaximum", 0) >= 1, connack
    pub.publish("ta/one", b"1", TopicAlias=1)
    pub.publish("", b"2", TopicAlias=1)
    pub.publish("ta/two", b"3", TopicAlias=1)  # the alias now stands for ta/two
    pub.publish("", b"4", TopicAlias=1)
    got = [(m.topic, m.payload) for m in (sub.message() for _ in range(4))]
    assert got == [("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3"), ("ta/two", b"4")], got
    # Subscribers get the topic name itself: the alias was the publisher's connection's.
    # An alias past the maximum the broker gave ends the connection (0x94).
    too_big = prop_of(connack, "TopicAliasMaximum") + 1
    pub.c.publish("ta/x", b"x", qos=0, properties=props(PacketTypes.PUBLISH, TopicAlias=too_big))
    rc = get(pub.disconnects, "the broker closing the connection")
    assert rc.value == 0x94, rc


def prop_of(properties, name, default=None):
    return getattr(properties, name, default) if properties else default


def session_expiry():
    pub = Client("se-pub")
    pub.connect()
    c = Client("se")
    flags, _, _ = c.connect(SessionExpiryInterval=2)
    assert not flags.session_present
    c.subscribe("se/t")
    c.disconnect()
    # Within the interval: the session, its subscription and what came meanwhile are there.
    assert pub.publish("se/t", b"while away").value == 0
    flags, _, _ = c.connect(clean_start=False, SessionExpiryInterval=2)
    assert flags.session_present, "the session did not survive a disconnect within its expiry"
    assert c.message().payload == b"while away"
    c.disconnect()
    time.sleep(3.5)  # past the interval
    rc = pub.publish("se/t", b"after it expired")
    assert rc.value == 0x10, f"the expired session's subscription is still there ({rc})"
    flags, _, _ = c.connect(clean_start=False, SessionExpiryInterval=60)
    assert not flags.session_present, "the session outlived its expiry interval"
    c.subscribe("se/t")
    pub.publish("se/t", b"new")
    assert c.message().payload == b"new"
    # A DISCONNECT may shorten the interval (to 0: the session ends with the connection).
    c.disconnect(SessionExpiryInterval=0)
    # Its subscription goes with it. (Waited for: a CONNECT on a new socket can reach the
    # broker before the DISCONNECT sent on the old one, and would take the session over.)
    deadline = time.monotonic() + WAIT
    while pub.publish("se/t", b"probe").value != 0x10:
        assert time.monotonic() < deadline, "the session outlived DISCONNECT's expiry 0"
        time.sleep(0.05)
    flags, _, _ = c.connect(clean_start=False, SessionExpiryInterval=60)
    assert not flags.session_present, "DISCONNECT's session expiry 0 did not end the session"


def receive_maximum():
    sub = Client("rm-sub", manual_ack=True)
    sub.connect(ReceiveMaximum=2)
    sub.subscribe("rm/t")
    pub = Client("rm-pub")
    pub.connect()
    for n in range(5):
        pub.publish("rm/t", str(n).encode())
    first = [sub.message(f"message {n}") for n in range(2)]
    nothing(sub.messages, "a third message unacknowledged past receive maximum 2", 1.0)
    got = list(first)
    for m in first:
        sub.c.ack(m.mid, m.qos)
    while len(got) < 5:
        m = sub.message(f"message {len(got)}")
        got.append(m)
        sub.c.ack(m.mid, m.qos)
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]


def server_keep_alive():
    # The broker runs with max_keepalive = 4.
    c = Client("ska")
    _, _, p = c.connect(keepalive=60)
    assert prop_of(p, "ServerKeepAlive") == 4, p
    c2 = Client("ska-low")
    _, _, p = c2.connect(keepalive=3)
    assert prop_of(p, "ServerKeepAlive") is None, p
    c3 = Client("ska-zero")
    _, _, p = c3.connect(keepalive=0)
    assert prop_of(p, "ServerKeepAlive") == 4, p
    c3.disconnect()
    # 3.1.1 cannot be told: a keep alive above the maximum is refused (identifier rejected).
    old = Client("ska-311", protocol=mqtt.MQTTv311)
    _, rc, _ = old.connect(keepalive=60, ok=False)
    assert rc.is_failure, rc
    old.c.loop_stop()
    # paho uses the keep alive it was told: it pings in time, and the broker, which closes
    # a client silent for 1.5 x 4 s, keeps it.
    c.subscribe("ska/t")
    nothing(c.disconnects, "disconnected while pinging at the server keep alive", 9.0)
    c2.publish("ska/t", b"still here")
    assert c.message().payload == b"still here"


def qos2_publisher_reconnects_before_pubrec():
    """The publisher's connection drops after the broker has the message but before the
    publisher sees PUBREC: it sends the PUBLISH again (DUP) on its session; one delivery."""
    sub = Client("q2p-sub")
    sub.connect()
    sub.subscribe("q2/p", qos=2)
    pub = Client("q2p-pub")
    pub.connect(SessionExpiryInterval=60)
    real = pub.c._handle_pubrec
    dropped = []

    def drop_first_pubrec():
        if not dropped:
            dropped.append(True)
            return mqtt.MQTT_ERR_CONN_LOST  # paho closes the socket, PUBREC unread
        return real()

    pub.c._handle_pubrec = drop_first_pubrec
    info = pub.c.publish("q2/p", b"once", qos=2)
    get(pub.disconnects, "the connection dropped at PUBREC")
    get(pub.connacks, "paho reconnecting on its session")
    mid, rc = get(pub.published, "PUBCOMP after the reconnect")
    assert mid == info.mid and not rc.is_failure, (mid, rc)
    assert sub.message().payload == b"once"
    pub.publish("q2/p", b"next", qos=2)
    m = sub.message("the next message")
    assert m.payload == b"next", f"delivered twice: {m.payload!r}"


def qos2_subscriber_reconnects_before_pubcomp():
    """The subscriber's connection drops after its PUBREC, before it sends PUBCOMP: the
    broker sends PUBREL again (not the PUBLISH) on its session; one delivery."""
    sub = Client("q2s-sub")
    sub.connect(SessionExpiryInterval=60)
    sub.subscribe("q2/s", qos=2)
    real = sub.c._handle_pubrel
    dropped = []

    def drop_first_pubrel():
        if not dropped:
            dropped.append(True)
            return mqtt.MQTT_ERR_CONN_LOST  # paho closes the socket, PUBREL unanswered
        return real()

    sub.c._handle_pubrel = drop_first_pubrel
    pub = Client("q2s-pub")
    pub.connect()
    pub.publish("q2/s", b"once", qos=2)
    get(sub.disconnects, "the connection dropped at PUBREL")
    get(sub.connacks, "paho reconnecting on its session")
    assert sub.message().payload == b"once"
    pub.publish("q2/s", b"next", qos=2)
    m = sub.message("the next message")
    assert m.payload == b"next", f"delivered twice: {m.payload!r}"
    assert sub.messages.empty()


def qos1_redelivered_after_reconnect():
    """A QoS 1 message the subscriber had not acknowledged when its connection dropped comes
    again on its session, flagged DUP, before what was queued meanwhile."""
    sub = Client("q1r-sub", manual_ack=True)
    sub.connect(SessionExpiryInterval=60)
    sub.subscribe("q1/r")
    pub = Client("q1r-pub")
    pub.connect()
    pub.publish("q1/r", b"unacked")
    first = sub.message()
    assert (first.payload, first.dup) == (b"unacked", False)
    sub.c.loop_stop()  # no PUBACK, and the connection goes without a DISCONNECT
    sub.c.socket().close()
    pub.publish("q1/r", b"queued")
    sub.c.reconnect()
    sub.c.loop_start()
    again = sub.message("the unacknowledged message again")
    assert (again.payload, again.dup) == (b"unacked", True), (again.payload, again.dup)
    sub.c.ack(again.mid, 1)
    queued = sub.message("the message queued meanwhile")
    assert queued.payload == b"queued", queued.payload
    sub.c.ack(queued.mid, 1)


def maximum_packet_size():
    """A message larger than the maximum packet size the client asked for is not sent to it
    (5.0 §3.1.2.11.4); smaller ones are."""
    small = Client("mps-small")
    small.connect(MaximumPacketSize=128)
    small.subscribe("mps/t")
    pub = Client("mps-pub")
    pub.connect()
    pub.publish("mps/t", b"x" * 500)
    pub.publish("mps/t", b"fits")
    m = small.message()
    assert m.payload == b"fits", f"got {len(m.payload)} bytes, over its maximum packet size"


def unsubscribe():
    """UNSUBACK says per filter whether there was a subscription (0x11 if not), and what
    was unsubscribed is no longer delivered."""
    c = Client("uns")
    c.connect()
    c.subscribe("uns/a")
    c.subscribe("uns/b")
    acks = queue.Queue()
    c.c.on_unsubscribe = lambda cl, u, mid, rcs, p: acks.put((mid, rcs))
    _, mid = c.c.unsubscribe(["uns/a", "uns/none"])
    got_mid, codes = get(acks, "UNSUBACK")
    assert got_mid == mid and [r.value for r in codes] == [0x00, 0x11], codes
    pub = Client("uns-pub")
    pub.connect()
    pub.publish("uns/a", b"gone")
    pub.publish("uns/b", b"kept")
    assert c.message().payload == b"kept"


def will_delay():
    """A will with a delay waits for it: a client back within the delay cancels it; one not
    back has it published when the delay has passed."""
    watcher = Client("wd-watch")
    watcher.connect()
    watcher.subscribe("wd/#")
    for client_id, comes_back in (("wd-back", True), ("wd-gone", False)):
        c = Client(client_id)
        c.c.will_set(f"wd/{client_id}", b"gone", qos=1,
                     properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=2))
        c.connect(SessionExpiryInterval=60)
        c.c.loop_stop()
        c.c.socket().close()  # no DISCONNECT: the will is due, after its delay
        started = time.monotonic()
        if comes_back:
            c.c.will_clear()
            c.c.reconnect()
            c.c.loop_start()
            get(c.connacks, "the reconnection")
            nothing(watcher.messages, "the will of a client that came back in time", 3.0)
        else:
            m = watcher.message("the will, after its delay")
            waited = time.monotonic() - started
            assert m.topic == "wd/wd-gone" and m.payload == b"gone", m.topic
            assert waited >= 1.5, f"the will came after {waited:.1f} s, before its 2 s delay"


def shared_subscription():
    """Members of a shared subscription group take turns: each message goes to one of them."""
    members = []
    for n in range(2):
        c = Client(f"sh-{n}")
        c.connect()
        c.subscribe("$share/g/sh/t")
        members.append(c)
    pub = Client("sh-pub")
    pub.connect()
    for n in range(10):
        pub.publish("sh/t", str(n).encode())
    pub.publish("sh/end", b"end")  # nobody: after it, everything is delivered
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < 10 and time.monotonic() < deadline:
        for c in members:
            try:
                got.append((c.id, int(c.messages.get(timeout=0.05).payload)))
            except queue.Empty:
                pass
    assert sorted(n for _, n in got) == list(range(10)), got
    assert {who for who, _ in got} == {"sh-0", "sh-1"}, f"one member got everything: {got}"


def puback_no_matching_subscribers():
    pub = Client("nm-pub")
    pub.connect()
    rc = pub.publish("nm/t", b"to nobody")
    assert rc.value == 0x10, rc
    sub = Client("nm-sub")
    sub.connect()
    sub.subscribe("nm/t")
    rc = pub.publish("nm/t", b"to somebody")
    assert rc.value == 0x00, rc
    assert sub.message().payload == b"to somebody"


if __name__ == "__main__":
    name = sys.argv[2]
    globals()[name]()
    print(f"PASS {name}")
