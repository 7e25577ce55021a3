"""The pack's python actions (actions/*.py: thin glue over actions/lib/dvremedy) on st2tests'
BaseActionTestCase, as st2-run-pack-tests runs Exchange pack tests: each action module loaded
by st2's own plugin loader (st2common.util.loader.register_plugin, what the python runner's
wrapper calls) gives one class, instantiated through st2's get_action_class_instance
(get_action_instance(config=...)) with st2tests' MockActionService; malformed ids are refused
with a clear bad_input error before any cloud, SSH or st2 API call; the admit action keeps its
hourly counter in the datastore through the ActionService (st2tests' MockDatastoreService).
The logic behind them is tested in tests/unit (test_admission, test_respond, test_remedy_*,
...); this file tests what st2 sees of the classes.

It sits directly in tests/ (st2tests finds the pack at the test file's directory + ..) and runs
in the st2tests pytest run (`pytest tests/`): importing st2tests eventlet-patches the process."""
import datetime
import glob
import os
from unittest import mock

import yaml
from st2common.runners.base_action import Action
from st2common.util import loader
from st2tests.base import BaseActionTestCase

from dvremedy.steps import admission

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SID = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VID = "7d0c8a4e-1b2f-4c3d-9e8f-0a1b2c3d4e5f"
IID = "65a1b2c3d4e5f60718293a4b"


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


CONFIG = _load(os.path.join(REPO, "dangling_volume.yaml.example"))
PYTHON_ACTIONS = {}  # action name -> (metadata, class st2's loader finds in its entry point)
for _path in sorted(glob.glob(os.path.join(REPO, "actions", "*.yaml"))):
    _meta = _load(_path)
    if _meta.get("runner_type") == "python-script":
        _classes = loader.register_plugin(Action, os.path.join(REPO, "actions",
                                                               _meta["entry_point"]))
        PYTHON_ACTIONS[_meta["name"]] = (_meta, _classes)


def no_outside_calls():
    """Patches that fail the test on any cloud, SSH or st2 API call."""
    def refuse(what):
        return mock.Mock(side_effect=AssertionError("%s was called" % what))
    return [mock.patch("dvremedy.adapters.cloud.connect", refuse("the cloud")),
            mock.patch("dvremedy.adapters.sshclient.SSHSession", refuse("SSH")),
            mock.patch("dvremedy.adapters.st2api.respond", refuse("st2's API"))]


class PackActionTestCase(BaseActionTestCase):
    """One python action (action_name): its class as st2's loader finds it. Not collected
    itself: one subclass per python action follows."""

    __test__ = False
    action_name = None

    def test_its_module_gives_one_class_that_st2_instantiates(self):
        meta, classes = PYTHON_ACTIONS[self.action_name]
        self.assertEqual(classes, [self.action_cls])  # the python runner runs classes[0]
        action = self.get_action_instance(config=CONFIG)
        self.assertIsInstance(action, self.action_cls)
        self.assertIsInstance(action, Action)
        self.assertIs(action.action_service, self.action_service)
        self.assertEqual(action.config["cloud"], CONFIG["cloud"])
        with self.assertRaisesRegex(ValueError, 'is missing key "nope"'):  # PackConfigDict
            action.config["nope"]
        self.assertEqual(action.logger.name, "st2.actions.python.%s" % self.action_cls.__name__)


for _name, (_meta, _classes) in PYTHON_ACTIONS.items():
    _cls = "Test_" + _name
    globals()[_cls] = type(_cls, (PackActionTestCase,), {
        "__test__": True, "action_name": _name, "action_cls": _classes[0]})
del _name, _meta, _classes, _cls, _path


def _cls(name):
    return PYTHON_ACTIONS[name][1][0]


# name, parameters with one malformed id, the parameter named in the error
BAD_IDS = [
    ("attachments", {"server_id": "web-1"}, "server_id"),
    ("get_connector", {"server_id": "web-1"}, "server_id"),
    ("stop_server", {"server_id": SID + " please"}, "server_id"),
    ("restore_power", {"server_id": "x", "power": "running"}, "server_id"),
    ("detach", {"server_id": SID, "volume_id": "vol-1"}, "volume_id"),
    ("identify", {"server_id": "web-1", "volume_id": VID}, "server_id"),
    ("libvirt_detach", {"server_id": SID, "volume_id": VID[:-1]}, "volume_id"),
    ("refresh", {"server_id": SID, "volume_id": "1111", "connector": {}}, "volume_id"),
    ("verify", {"server_id": "1111 on server 2222", "volume_id": VID}, "server_id"),
    ("respond", {"inquiry_id": "nope", "approved": True}, "inquiry_id"),
]


class TestBadIdsAreRefusedBeforeAnyCall(BaseActionTestCase):
    action_cls = _cls("identify")

    def test_bad_ids(self):
        for name, params, field in BAD_IDS:
            with self.subTest(action=name):
                self.action_cls = _cls(name)
                action = self.get_action_instance(config=CONFIG)
                patches = no_outside_calls()
                for patch in patches:
                    patch.start()
                try:
                    ok, result = action.run(**params)
                finally:
                    for patch in patches:
                        patch.stop()
                self.assertIs(ok, False)  # the python runner marks the execution failed
                error = result["error"]
                self.assertEqual(error["kind"], "bad_input", error)
                self.assertIn(field, error["message"])


class TestAdmitCountsInTheDatastore(BaseActionTestCase):
    action_cls = _cls("admit")

    def test_automatic_runs_count_under_a_global_key_until_the_cap(self):
        config = dict(CONFIG, automatic=dict(CONFIG["automatic"], max_per_hour=2))
        action = self.get_action_instance(config=config)
        key = admission.counter_key(datetime.datetime.utcnow())
        results = [action.run(mode="automatic", triggered_by={"source": "sensor"})
                   for _ in range(3)]
        self.assertEqual([ok for ok, _ in results], [True, True, True])
        self.assertEqual([r["admitted"] for _, r in results], [True, True, False])
        self.assertIn("hourly cap reached", results[2][1]["did"])
        # a global key (local=False): not under the "<pack>.<Class>:" prefix
        self.assertEqual(self.action_service.get_value(key, local=False), "2")
        self.assertIsNone(self.action_service.get_value(key))
        [kvp] = self.action_service.list_values(local=False, prefix=key)
        self.assertEqual(kvp.ttl, admission.COUNTER_TTL_S)

    def test_manual_runs_touch_no_counter(self):
        ok, result = self.get_action_instance(config=CONFIG).run(mode="manual")
        self.assertTrue(ok and result["admitted"])
        self.assertEqual(self.action_service.list_values(local=False), [])

    def test_a_mode_it_does_not_know_is_refused(self):
        ok, result = self.get_action_instance(config=CONFIG).run(mode="sometimes")
        self.assertIs(ok, False)
        self.assertEqual(result["error"]["kind"], "bad_input")
        self.assertIn("mode must be manual or automatic", result["error"]["message"])
        self.assertEqual(self.action_service.list_values(local=False), [])


class TestRespondNeedsSt2sEnvironment(BaseActionTestCase):
    action_cls = _cls("respond")

    def test_without_st2s_api_url_it_says_what_is_missing(self):
        with mock.patch.dict(os.environ, {}, clear=False) as environ:
            for name in ("ST2_ACTION_API_URL", "ST2_API_URL"):
                environ.pop(name, None)
            patches = no_outside_calls()
            for patch in patches:
                patch.start()
            try:
                ok, result = self.get_action_instance(config=CONFIG).run(
                    inquiry_id=IID, approved=True)
            finally:
                for patch in patches:
                    patch.stop()
        self.assertIs(ok, False)
        self.assertIn("is not set: respond runs under st2's python runner",
                      result["error"]["message"])
