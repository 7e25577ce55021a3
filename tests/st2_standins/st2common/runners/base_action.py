"""Stand-in for StackStorm/st2:st2common/st2common/runners/base_action.py @v3.9.0 (`Action`), with
the two helpers it uses from st2common/st2common/runners/utils.py @v3.9.0 (`PackConfigDict`, the
per-action logger).

On PYTHONPATH only when the real st2common cannot be imported (tests, lint, tools/st2local);
where st2 is installed the real module wins and the suite must pass unchanged. Written from the
contract in ../shared/reference/stackstorm.md §2 (last bullet) and §4:
- `Action.__init__(self, config=None, action_service=None)` sets `self.config` (a
  `PackConfigDict`: a missing key raises ValueError, not KeyError), `self.action_service` and
  `self.logger` (`actions.python.<ClassName>`, to stderr, format
  `"%(name)-12s: %(levelname)-8s %(message)s"`, at the runner's log level);
- `run(**kwargs)` is abstract.
The pack name and log level come from `action_service._action_wrapper` (`_pack`, `_log_level`)
when there is one, as in st2; tools/st2local's ActionService provides both.
"""
import abc
import logging
import os
import sys

__all__ = ["Action", "PackConfigDict", "get_logger_for_python_runner_action"]

# Where st2 keeps pack configs (<system.base_path>/configs/<pack>.yaml, system.base_path default).
CONFIGS_DIR = "/opt/stackstorm/configs"
LOG_FORMAT = "%(name)-12s: %(levelname)-8s %(message)s"

_LOGGERS = {}


class PackConfigDict(dict):
    """A pack config: `config["missing"]` raises ValueError naming the pack, the key and the
    config file (st2 behaviour); use `.get()` for optional keys."""

    def __init__(self, pack_name, *args):
        super(PackConfigDict, self).__init__(*args)
        self._pack_name = pack_name

    def __getitem__(self, key):
        try:
            return super(PackConfigDict, self).__getitem__(key)
        except KeyError:
            path = os.path.join(CONFIGS_DIR, "%s.yaml" % self._pack_name)
            raise ValueError(
                'Config for pack "%s" is missing key "%s". Make sure that the config file exists '
                'on disk (%s) and contains that key, and run "st2ctl reload --register-configs" '
                "after every change to it." % (self._pack_name, key, path))


def get_logger_for_python_runner_action(action_name, log_level="debug"):
    """One logger per action class, `actions.python.<action_name>`, writing to stderr."""
    name = "actions.python.%s" % action_name
    logger = _LOGGERS.get(name)
    if logger is None:
        level = getattr(logging, str(log_level).upper(), logging.DEBUG)
        if not isinstance(level, int):
            level = logging.DEBUG
        logger = logging.getLogger(name)
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(level)
        _LOGGERS[name] = logger
    return logger


class Action(abc.ABC):
    """Base class of python-script actions: implement `run(self, **parameters)`."""

    def __init__(self, config=None, action_service=None):
        self.config = config or {}
        self.action_service = action_service
        wrapper = getattr(action_service, "_action_wrapper", None) if action_service else None
        if wrapper is not None:
            log_level = getattr(wrapper, "_log_level", "debug")
            pack_name = getattr(wrapper, "_pack", "unknown")
        else:
            log_level = "debug"
            pack_name = "unknown"
        self.config = PackConfigDict(pack_name, self.config)
        self.logger = get_logger_for_python_runner_action(
            action_name=self.__class__.__name__, log_level=log_level)

    @abc.abstractmethod
    def run(self, **kwargs):
        pass
