"""The consumer behind the dangling_volume.detach_failed sensor: Nova's notifications from
RabbitMQ (kombu, which st2 ships: never pin it in requirements.txt) to trigger dispatches. This
module is the broker side; what happens to each message is consumer_messages.py, the settings
consumer_settings.py.

It imports only the modules beside it in sensors/, kombu and the stdlib: a sensor process sees
sensors/, its pip packages and st2's own, never actions/lib (docs/stackstorm.md, "What a sensor
process sees").

What it does, and why (docs/nova-notifications.md, "Wire format on RabbitMQ"):
- Its own durable queue (notifications.queue), bound to Nova's topic exchange with the configured
  routing keys. Never the shared notifications.* queues: other consumers (Ceilometer, ...) read
  those, and taking messages from them would steal theirs.
- The exchange is declared with Nova's own flags (topic, durable from
  notifications.exchange_durable, not auto-delete): any other flags are refused by the broker
  (406 PRECONDITION_FAILED), which is logged naming the key to change.
- Exchange, queue and bindings are declared again on every (re)connect: a broker restart drops a
  non-durable exchange and every binding to it, while the durable queue and its persistent
  messages survive.
- run() never raises and never returns until stop(): st2 respawns a dead sensor only twice. Every
  failure (broker down, restart, refused declare, st2 unable to take a dispatch) is logged, then
  the loop backs off (exponential, capped, with jitter) and reconnects.
- expire() runs every tick (<= 1 s), so a .start without .end fires within about a second of
  notifications.detach_window.
"""
import logging
import random
import re
import socket
import threading
import time
import traceback

import kombu

from consumer_messages import (CONNECTION_ERRORS, PREFETCH_COUNT, DetachMessageHandler,
                               DispatchError)
from consumer_settings import CONFIG_SECTION, broker_urls, mask_url

MAX_TICK_S = 1.0         # expire(), heartbeats and held-message releases at least this often
STOP_CHECK_S = 0.2       # longest wait for a message before the stop flag is looked at again
BACKOFF_INITIAL_S = 0.5  # first reconnect delay; doubles per failed attempt ...
BACKOFF_MAX_S = 30.0     # ... up to this; each delay is drawn in [d/2, d] (jitter)
STABLE_S = 10.0          # a session that consumed this long resets the back-off


class SetupRefused(RuntimeError):
    """The broker refused a declare (already logged with what to change)."""


def backoff_delays(initial=None, maximum=None, rng=random.random):
    """Delays for consecutive failed attempts: initial * 2**n capped at maximum, each drawn
    uniformly from its upper half (jitter: a fleet of sensors does not reconnect in step)."""
    initial = BACKOFF_INITIAL_S if initial is None else initial
    maximum = BACKOFF_MAX_S if maximum is None else maximum
    attempt = 0
    while True:
        ceiling = min(maximum, initial * (2 ** min(attempt, 30)))
        yield ceiling / 2 + rng() * ceiling / 2
        attempt += 1


class NovaDetachConsumer(DetachMessageHandler):
    """The consumer loop. `service` is the st2 sensor service (dispatch, get_value, set_value);
    `logger` a logging.Logger. run() blocks until stop()."""

    def __init__(self, settings, service, logger=None, clock=time.monotonic,
                 backoff_initial_s=None, backoff_max_s=None):
        self._urls = broker_urls(settings.transport_url)
        super().__init__(settings, service, logger or logging.getLogger(__name__), clock)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stop = threading.Event()
        self.tick_s = max(0.05, min(MAX_TICK_S, settings.detach_window / 10.0))
        self.connected = threading.Event()   # set while consuming (tests and the glue read it)

    # -- control

    def stop(self):
        """Ask run() to return: it does within STOP_CHECK_S (at once from a back-off wait)."""
        self._stop.set()

    def run(self):
        """Consume until stop(). Never raises: every error is logged, backed off, retried."""
        delays = backoff_delays(*self._backoff)
        attempt = 0
        self._log.info("consuming Nova notifications: %s", self.settings.masked())
        while not self._stop.is_set():
            url = self._urls[attempt % len(self._urls)]
            attempt += 1
            began = self._clock()
            consumed_s = [0.0]
            outcome = None  # what ended the session; None: stop() did
            try:
                self._session(url, consumed_s)
            except SetupRefused:
                outcome = "declare refused"  # logged where it happened, with what to change
            except DispatchError as exc:
                outcome = "st2 did not take a dispatch: %s" % self._scrub(exc)
            except Exception as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    outcome = "broker %s: %s: %s" % (
                        mask_url(url), type(exc).__name__, self._scrub(exc) or "closed")
                else:
                    outcome = "unexpected error on broker %s: %s" % (
                        mask_url(url), self._scrub("".join(traceback.format_exception(
                            type(exc), exc, exc.__traceback__))))
            if outcome is None or self._stop.is_set():
                break
            self.stats["reconnects"] += 1
            if consumed_s[0] >= STABLE_S:
                delays = backoff_delays(*self._backoff)  # it worked for a while: start over
            delay = next(delays)
            self._log.warning("%s; reconnecting in %.1f s (session lasted %.1f s)",
                              outcome, delay, self._clock() - began)
            self._wait_offline(delay)
        self._log.info("stopped consuming Nova notifications (%s)", self._stats_text())

    def _wait_offline(self, delay):
        """The back-off wait. A .start whose window ends meanwhile still fires (dispatching
        needs st2, not this broker); its message, redelivered later, is then a known request."""
        deadline = self._clock() + delay
        while not self._stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            self._stop.wait(min(left, self.tick_s))
            self._enqueue(self.tracker.expire())
            try:
                self._flush_pending()
            except DispatchError:
                pass  # still pending: tried again on the next tick or after reconnecting

    # -- one connection

    def _session(self, url, consumed_s):
        settings = self.settings
        io_timeout = max(30.0, 3 * settings.connect_timeout)
        conn = kombu.Connection(
            url, ssl=settings.ssl_options(url), connect_timeout=settings.connect_timeout,
            heartbeat=settings.heartbeat,
            # Socket-level limits for what has no timeout of its own: a declare or an ack on a
            # broker that accepted the connection but stopped answering or reading. (The
            # consume loop's reads use drain_events' own timeout.)
            transport_options={"read_timeout": io_timeout, "write_timeout": io_timeout})
        try:
            conn.ensure_connection(max_retries=0)  # one attempt: the back-off is ours
            channel = conn.channel()
            queue = self._declare(channel)
            consumer = kombu.Consumer(channel, queues=[queue], on_message=self._on_message,
                                      auto_declare=False, no_ack=False)
            consumer.qos(prefetch_count=PREFETCH_COUNT)
            self._flush_pending()  # what st2 refused last time goes first
            consumer.consume()
            self._log.info("connected to %s: queue %r bound to exchange %r (durable=%s) with %s",
                           mask_url(url), settings.queue, settings.exchange,
                           settings.exchange_durable, ", ".join(settings.routing_keys))
            self.connected.set()
            started = self._clock()
            next_tick = started
            while not self._stop.is_set():
                try:
                    conn.drain_events(timeout=min(self.tick_s, STOP_CHECK_S))
                except socket.timeout:
                    pass
                now = self._clock()
                consumed_s[0] = now - started
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    self._tick(now)
                    conn.heartbeat_check()
        finally:
            self.connected.clear()
            # Unacked messages (held or in flight) go back to the queue when the channel
            # closes: the broker redelivers them to the next session.
            del self._held[:]
            try:
                conn.release()
            except Exception:  # the connection is already dead; nothing to release cleanly
                pass

    def _declare(self, channel):
        settings = self.settings
        # Nova's own flags: topic, durable as configured, no auto-delete
        # (docs/nova-notifications.md, "Wire format on RabbitMQ").
        exchange = kombu.Exchange(settings.exchange, type="topic",
                                  durable=settings.exchange_durable, auto_delete=False)
        queue = kombu.Queue(settings.queue, exchange=exchange, durable=True, auto_delete=False,
                            exclusive=False, channel=channel)
        step = "exchange"
        try:
            exchange(channel).declare()
            step = "queue"
            queue.queue_declare()
            step = "binding"
            for key in settings.routing_keys:
                queue.bind_to(exchange=settings.exchange, routing_key=key)
        except Exception as exc:
            code = getattr(exc, "reply_code", None)
            if code not in (403, 404, 405, 406):
                raise  # a connection problem: the caller's back-off handles it
            self._log.error("%s", self._refusal(step, code, exc))
            raise SetupRefused(step) from None
        return queue

    def _refusal(self, step, code, exc):
        settings, text = self.settings, self._scrub(getattr(exc, "reply_text", None) or exc)
        if step == "exchange" and code == 406:
            current = re.search(r"current is '(\w+)'", text)
            want = current.group(1) if current else ("false" if settings.exchange_durable
                                                     else "true")
            return ("the broker refused to declare exchange %r with durable=%s (406 "
                    "PRECONDITION_FAILED: %s). Nova declared it with other flags: set "
                    "%s.exchange_durable to %s in the pack config (true where Nova uses "
                    "amqp_durable_queues or quorum queues), then `st2ctl reload "
                    "--register-configs` and restart the sensor"
                    % (settings.exchange, str(settings.exchange_durable).lower(), text,
                       CONFIG_SECTION, want))
        if step == "queue" and code == 406:
            return ("the broker refused to declare queue %r (406 PRECONDITION_FAILED: %s): a "
                    "queue of that name exists with other arguments; delete it or set another "
                    "%s.queue" % (settings.queue, text, CONFIG_SECTION))
        return ("the broker refused the %s declare for exchange %r / queue %r (%s: %s): check "
                "the user's permissions on the vhost and %s.exchange / %s.queue"
                % (step, settings.exchange, settings.queue, code, text, CONFIG_SECTION,
                   CONFIG_SECTION))
