"""st2 glue for the dangling_volume.detach_failed trigger: a passive sensor whose run() is the
Nova notification consumer (nova_consumer.py beside it, with the modules it imports). One class
in this module, as st2's loader expects (docs/stackstorm.md, "What a sensor process sees"). st2
appends sensors/ to sys.path, after site-packages: the modules here have names no installed
package uses."""
import threading

from st2reactor.sensor.base import Sensor

import consumer_settings
import nova_consumer


class NovaDetachSensor(Sensor):
    """Dispatches dangling_volume.detach_failed when Nova fails to detach a volume."""

    def __init__(self, sensor_service, config=None):
        super(NovaDetachSensor, self).__init__(sensor_service=sensor_service, config=config)
        self._logger = sensor_service.get_logger(name=self.__class__.__name__)
        self._consumer = None
        self._problem = None
        self._stopped = threading.Event()

    @property
    def consumer(self):
        """The NovaDetachConsumer once setup() found a usable config, else None."""
        return self._consumer

    def setup(self):
        try:
            settings = consumer_settings.Settings.from_config(self.config)
        except consumer_settings.ConfigError as exc:
            self._problem = "%s (pack config dangling_volume)" % exc
            return
        if not settings.transport_url:
            self._problem = ("%s.transport_url is empty" % consumer_settings.CONFIG_SECTION)
            return
        self._consumer = nova_consumer.NovaDetachConsumer(settings, self.sensor_service,
                                                          self._logger)

    def run(self):
        # st2 respawns a sensor whose run() ends only twice, so this returns only on cleanup().
        if self._consumer is not None:
            self._consumer.run()
            return
        self._logger.error(
            "not consuming Nova notifications: %s. Set notifications.transport_url (and the "
            "other notifications.* keys) in /opt/stackstorm/configs/dangling_volume.yaml, run "
            "`st2ctl reload --register-configs` and restart the sensor; until then this "
            "sensor idles.", self._problem or "no configuration")
        self._stopped.wait()

    def cleanup(self):
        self._stopped.set()
        if self._consumer is not None:
            self._consumer.stop()

    # The trigger type has no parameters: trigger instances change nothing here.
    def add_trigger(self, trigger):
        pass

    def update_trigger(self, trigger):
        pass

    def remove_trigger(self, trigger):
        pass
