"""The broker tier: the sensor against a real RabbitMQ that this session starts itself
(tools/pylib/testsupport/rabbitmq_process.py: Debian's rabbitmq-server on 127.0.0.5 with free
ports, its own epmd and data directory), never the lab's. One broker per pytest session; tests
that kill or restart it leave it running for the next one. Python 3.8 and 3.11."""
import threading
import time
import uuid

import kombu
import pytest

from testsupport import nova_wire as wire
from testsupport import rabbitmq_process
from testsupport import sensor_service as recording  # not st2tests: see its header
import nova_consumer
import nova_detach_sensor


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    why = rabbitmq_process.available()
    if why:
        pytest.skip("no private RabbitMQ for the broker tier: %s" % why)
    server = rabbitmq_process.RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def live_broker(broker):
    """The session broker, started again if an earlier test left it down."""
    broker.start()
    return broker


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """Reconnect delays of tenths of a second (production: 0.5 s doubling up to 30 s)."""
    monkeypatch.setattr(nova_consumer, "BACKOFF_INITIAL_S", 0.1)
    monkeypatch.setattr(nova_consumer, "BACKOFF_MAX_S", 0.5)


class RunningSensor:
    """The real sensor class, run() in a thread as st2's sensor wrapper runs it."""

    def __init__(self, service, config):
        self.service = service
        self.sensor = nova_detach_sensor.NovaDetachSensor(service, config)
        self.sensor.setup()
        self.consumer = self.sensor.consumer
        self.thread = threading.Thread(target=self.sensor.run, name="sensor-run", daemon=True)
        self.thread.start()

    def wait_connected(self, timeout=30):
        assert self.consumer.connected.wait(timeout), "the sensor did not connect"
        return self

    def stop(self, timeout=5):
        began = time.monotonic()
        self.sensor.cleanup()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return after cleanup()"
        return time.monotonic() - began


@pytest.fixture
def names():
    """A queue name (and exchange suffix) of this test's own."""
    tag = uuid.uuid4().hex[:8]
    return {"queue": "dangling_volume.test-%s" % tag, "tag": tag}


@pytest.fixture
def start_sensor(broker, names, tmp_path):
    """start_sensor(**notifications) -> RunningSensor on the test's own queue; every sensor is
    stopped at the end (it must stop promptly), its queue deleted, and no payload it dispatched
    may be one st2 would have dropped."""
    started = []
    datastore = tmp_path / "datastore.json"

    def start(service=None, **notifications):
        settings = dict({"transport_url": broker.url, "queue": names["queue"],
                         "connect_timeout": 2, "heartbeat": 10}, **notifications)
        service = service or recording.detach_failed_service(datastore_path=datastore)
        started.append(RunningSensor(service, {"notifications": settings}))
        return started[-1]
    yield start
    for running in started:
        assert running.stop() < 3.0
        assert running.service.invalid == []
    if broker.running:
        with kombu.Connection(broker.url, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(names["queue"])


class Publisher:
    """Publishes as Nova's rabbit driver does (and declares the exchange as Nova does)."""

    def __init__(self, url, exchange=wire.EXCHANGE):
        self.exchange = wire.nova_exchange(exchange)
        self.conn = kombu.Connection(url, connect_timeout=5)
        self.producer = kombu.Producer(self.conn.channel(), exchange=self.exchange)
        self.exchange(self.producer.channel).declare()

    def send(self, msg, envelope=wire.v2, key=None):
        body = envelope(msg) if isinstance(msg, dict) else msg
        wire.publish(self.producer, body, key or wire.routing_key(msg), exchange=self.exchange)

    def close(self):
        self.conn.release()


@pytest.fixture
def publisher(live_broker):
    made = []

    def make(exchange=wire.EXCHANGE):
        made.append(Publisher(live_broker.url, exchange))
        return made[-1]
    yield make
    for pub in made:
        pub.close()
