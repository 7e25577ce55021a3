"""Capture Nova's notifications from the lab's real RabbitMQ, as an operator's tool would:
a private queue bound to the `nova` topic exchange (declared with Nova's own flags: topic,
not durable), never Nova's shared `notifications.*` queues."""
import json
import time
import uuid

import kombu

ROUTING_KEYS = ("notifications.info", "notifications.error",
                "versioned_notifications.info", "versioned_notifications.error")


def unwrap(body):
    """The oslo.messaging envelope: v2 is JSON inside a JSON string; v1 is the message itself."""
    if isinstance(body, (bytes, str)):
        body = json.loads(body)
    if "oslo.message" in body:
        return json.loads(body["oslo.message"])
    return body


class NotificationCapture:
    def __init__(self, amqp_url, exchange="nova"):
        self.conn = kombu.Connection(amqp_url, connect_timeout=5)
        self.exchange = kombu.Exchange(exchange, type="topic", durable=False)
        self.queue = kombu.Queue("lab-test-%s" % uuid.uuid4().hex[:8], exchange=self.exchange,
                                 bindings=[kombu.binding(self.exchange, routing_key=k)
                                           for k in ROUTING_KEYS],
                                 durable=False, auto_delete=True)
        self.messages = []
        self.consumer = None

    def __enter__(self):
        self.conn.ensure_connection(max_retries=3)
        self.consumer = kombu.Consumer(self.conn.channel(), queues=[self.queue],
                                       callbacks=[self._on_message], accept=["json"])
        self.consumer.consume()
        return self

    def __exit__(self, *exc):
        try:
            self.consumer.cancel()
        finally:
            self.conn.release()

    def _on_message(self, body, message):
        msg = unwrap(body)
        msg["_routing_key"] = message.delivery_info.get("routing_key")
        self.messages.append(msg)
        message.ack()

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.conn.drain_events(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except OSError:  # socket.timeout: nothing arrived in that slice
                pass
        return self.messages

    def wait_for(self, predicate, timeout):
        """Drain until predicate(messages) holds; returns the messages seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages):
                return self.messages
            self.drain(0.5)
        return self.messages

    def of(self, event_type, server_id=None):
        return [m for m in self.messages if m.get("event_type") == event_type and
                (server_id is None or server_id in json.dumps(m.get("payload")))]
