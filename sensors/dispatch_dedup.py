"""One dispatch per (server, volume) within notifications.dedup_window, so that a retrying user,
a redelivered message or a restarted sensor does not start a second remedy. Remembered in memory
and in the st2 datastore (`set_value(..., ttl=dedup_window)`). The datastore has no
compare-and-set: with several sensor containers two may dispatch the same failure. That is best
effort by design; the guarantee is the remedy's concurrency policy plus a remedy that changes
nothing on a healthy attachment.
"""
import collections
import hashlib
import re
import time


class Deduplicator:
    """One dispatch per (server, volume) within `window_s`: in memory, and in the st2 datastore
    through the sensor service (get_value / set_value with ttl) so a restarted sensor, or
    another sensor container that reads after this one wrote, also knows. Best effort: there is
    no compare-and-set, and a datastore error counts as "not seen" (dispatching twice is safer
    than not at all)."""

    KEY_PREFIX = "detach_failed"

    def __init__(self, service, window_s, logger, clock=time.monotonic):
        self._service, self.window_s, self._logger = service, int(window_s), logger
        self._clock = clock
        self._recent = collections.OrderedDict()  # (server, volume) -> monotonic expiry

    @classmethod
    def key(cls, server_id, volume_id):
        def part(value):
            if re.match(r"^[A-Za-z0-9_.-]{1,64}$", value):
                return value
            return "sha1-" + hashlib.sha1(value.encode("utf-8")).hexdigest()
        return "%s.%s.%s" % (cls.KEY_PREFIX, part(server_id), part(volume_id))

    def _prune(self, now):
        while self._recent and next(iter(self._recent.values())) <= now:
            self._recent.popitem(last=False)

    def seen(self, server_id, volume_id):
        now = self._clock()
        self._prune(now)
        if (server_id, volume_id) in self._recent:
            return True
        try:
            return self._service.get_value(self.key(server_id, volume_id)) is not None
        except Exception as exc:  # st2 returns None on API errors; a double may raise
            self._logger.warning("dedup: datastore read failed (%s): treating the failure of "
                                 "server %s volume %s as new", type(exc).__name__, server_id,
                                 volume_id)
            return False

    def remember(self, server_id, volume_id, note):
        self._recent[(server_id, volume_id)] = self._clock() + self.window_s
        self._recent.move_to_end((server_id, volume_id))
        try:
            self._service.set_value(self.key(server_id, volume_id), note, ttl=self.window_s)
        except Exception as exc:
            self._logger.warning("dedup: datastore write failed (%s): only this sensor process "
                                 "remembers server %s volume %s", type(exc).__name__,
                                 server_id, volume_id)
