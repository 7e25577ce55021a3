"""Nova notifications as they travel on RabbitMQ, built here from the documented formats (not
copied from any upstream file), for the sensor tests and the sensor benchmark:

- the inner message: oslo.messaging notifier._notify (message_id, publisher_id, event_type,
  priority, payload, timestamp "YYYY-MM-DD HH:MM:SS.ffffff" UTC without zone) plus what the AMQP
  driver adds (_unique_id, the request context flattened into _context_* keys)
  (docs/nova-notifications.md, "Wire format on RabbitMQ");
- the envelope: messagingv2 = {"oslo.version": "2.0", "oslo.message": "<the message as a JSON
  string>"}; driver `messaging` (1.0) = the message itself;
- the routing key <topic>.<priority>: versioned_notifications.info for instance.* events,
  versioned_notifications.error for compute.exception, notifications.error for the legacy
  detach_volume ERROR, notifications.info for legacy INFO events;
- payloads: versioned ones as nova objects (nova_object.name/namespace/version/data) with the
  InstancePayload fields (docs/nova-notifications.md, "What a failed detach emits");
  the legacy detach_volume ERROR as {exception, args: {instance, volume_id, attachment_id}}
  (same section: `exception` a dict, or a string such as "ClientException()");
- AMQP properties as Nova's rabbit driver sets them: application/json, utf-8, delivery_mode 2.
"""
import datetime
import itertools
import json
import uuid

import kombu

EXCHANGE = "nova"
INFO_V, ERROR_V = "versioned_notifications.info", "versioned_notifications.error"
INFO_LEGACY, ERROR_LEGACY = "notifications.info", "notifications.error"
PROJECT = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
_seq = itertools.count(1)


def new_id():
    return str(uuid.uuid4())


def new_request_id():
    return "req-" + new_id()


def now_text():
    return datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")


def message(event_type, payload, publisher, priority="INFO", request_id=None):
    """The inner notification dict (notifier._notify + the AMQP driver's keys)."""
    return {
        "message_id": new_id(), "publisher_id": publisher, "event_type": event_type,
        "priority": priority, "payload": payload, "timestamp": now_text(),
        "_unique_id": uuid.uuid4().hex,
        "_context_request_id": request_id or new_request_id(),
        "_context_global_request_id": None, "_context_user_id": "b4f1e2d3c4b5a6978877665544332211",
        "_context_project_id": PROJECT, "_context_is_admin": True, "_context_read_deleted": "no",
        "_context_auth_token": None, "_context_roles": ["admin", "member", "reader"],
        "_context_show_deleted": False, "_context_remote_address": "10.0.0.5",
        "_context_user_name": "admin", "_context_project_name": "admin",
    }


def v2(msg):
    """messagingv2: the message as a JSON string inside the oslo envelope (a str body)."""
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)})


def v1(msg):
    """Driver `messaging` (1.0): the message itself."""
    return json.dumps(msg)


def nova_object(name, version, data):
    return {"nova_object.name": name, "nova_object.namespace": "nova",
            "nova_object.version": version, "nova_object.data": data}


def instance_data(server, host, request_id=None, **extra):
    """InstancePayload 1.9 fields (a realistic size: ~2.5 kB once on the wire)."""
    data = {
        "uuid": server, "host": host, "node": host, "state": "active", "task_state": None,
        "power_state": "running", "vm_state": "active", "locked": False, "locked_reason": None,
        "display_name": "vm-%s" % server[:8], "display_description": "", "host_name": "vm",
        "architecture": "x86_64", "availability_zone": "nova", "auto_disk_config": "MANUAL",
        "created_at": "2026-11-24T10:00:00Z", "launched_at": "2026-11-24T10:00:05Z",
        "updated_at": "2026-11-24T10:00:05Z", "deleted_at": None, "terminated_at": None,
        "image_uuid": "", "kernel_id": "", "ramdisk_id": "", "key_name": None,
        "os_type": None, "progress": 0, "reservation_id": "r-%s" % server[:8], "metadata": {},
        "tenant_id": PROJECT, "user_id": "b4f1e2d3c4b5a6978877665544332211",
        "request_id": request_id, "action_initiator_user": "admin",
        "action_initiator_project": PROJECT, "shares": [], "block_devices": [], "fault": None,
        "flavor": nova_object("FlavorPayload", "1.4", {
            "flavorid": "lab.tiny", "name": "lab.tiny", "memory_mb": 512, "vcpus": 1,
            "root_gb": 0, "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0,
            "vcpu_weight": 0, "disabled": False, "is_public": True, "extra_specs": {},
            "projects": None, "description": None}),
        "ip_addresses": [nova_object("IpPayload", "1.0", {
            "address": "192.168.1.3", "device_name": "tapce531f90-19", "label": "private",
            "mac": "fa:16:3e:4c:2c:30", "meta": {}, "port_uuid": new_id(), "version": 4})],
    }
    data.update(extra)
    return data


# ---------------------------------------------------------------- the events

def detach_start(server, volume, host="compute-1", request_id=None):
    request_id = request_id or new_request_id()
    return message("instance.volume_detach.start", nova_object(
        "InstanceActionVolumePayload", "1.7",
        instance_data(server, host, request_id, volume_id=volume)),
        "nova-compute:" + host, request_id=request_id)


def detach_end(server, volume, host="compute-1", request_id=None):
    msg = detach_start(server, volume, host, request_id)
    msg["event_type"] = "instance.volume_detach.end"
    return msg


def instance_primitive(server, host):
    """args.instance as Nova serialises it (to_primitive of the Instance object)."""
    return nova_object("Instance", "2.8", {
        "uuid": server, "host": host, "node": host, "vm_state": "active", "task_state": None,
        "power_state": 1, "display_name": "vm-%s" % server[:8], "project_id": PROJECT,
        "locked": False})


def legacy_error(server, volume, host="compute-1", request_id=None,
                 exception="ClientException()"):
    """The legacy `detach_volume` ERROR of ComputeManager.detach_volume's @wrap_exception."""
    return message("detach_volume", {
        "exception": exception,
        "args": {"instance": instance_primitive(server, host), "volume_id": volume,
                 "attachment_id": new_id()}},
        "compute." + host, priority="ERROR", request_id=request_id)


def compute_exception(host="compute-1", request_id=None, exception="ClientException",
                      module="cinderclient.client", function="request",
                      text="The server has either erred or is incapable of performing the "
                           "requested operation. (HTTP 500) (Request-ID: req-0f1e2d3c)"):
    """The versioned compute.exception (ExceptionPayload 1.1): it names no server or volume."""
    return message("compute.exception", nova_object("ExceptionPayload", "1.1", {
        "exception": exception, "exception_message": text, "function_name": function,
        "module_name": module,
        "traceback": "Traceback (most recent call last):\n  File \"nova/compute/manager.py\""}),
        "nova-compute:" + host, priority="ERROR", request_id=request_id)


def instance_update(server=None, host="compute-1"):
    """An everyday versioned event the pack ignores (the bulk of versioned_notifications.info)."""
    server = server or new_id()
    data = instance_data(server, host, new_request_id(), old_display_name=None, tags=[],
                         state_update=nova_object("InstanceStateUpdatePayload", "1.0", {
                             "old_state": "active", "state": "active",
                             "old_task_state": None, "new_task_state": None}))
    return message("instance.update", nova_object("InstanceUpdatePayload", "2.1", data),
                   "nova-compute:" + host)


def legacy_volume_detached(server, volume, host="compute-1", request_id=None):
    """The legacy INFO of a successful detach (compute.instance.volume.detach)."""
    return message("compute.instance.volume.detach",
                   {"instance_id": server, "volume_id": volume, "host": host},
                   "compute." + host, request_id=request_id)


ROUTING = {
    "instance.volume_detach.start": INFO_V, "instance.volume_detach.end": INFO_V,
    "instance.update": INFO_V, "compute.exception": ERROR_V, "detach_volume": ERROR_LEGACY,
    "compute.instance.volume.detach": INFO_LEGACY,
}


def routing_key(msg):
    """Where Nova sends a message: <topic>.<priority>, the topic by notification format."""
    topic = ("versioned_notifications" if isinstance(msg.get("payload"), dict) and
             "nova_object.name" in msg["payload"] else "notifications")
    priority = str(msg.get("priority", "INFO")).lower()
    return ROUTING.get(msg.get("event_type"), "%s.%s" % (topic, priority))


def break_2a(server, volume, host="compute-1"):
    """What a detach with cinder-volume down emits, in Nova's order: the .start, the legacy
    detach_volume ERROR (exception "ClientException()"), then compute.exception."""
    request_id = new_request_id()
    return [detach_start(server, volume, host, request_id),
            legacy_error(server, volume, host, request_id, exception="ClientException()"),
            compute_exception(host, request_id)]


# ---------------------------------------------------------------- publishing

def nova_exchange(name=EXCHANGE, durable=False):
    """The exchange as Nova declares it (topic; durable only with durable/quorum queues)."""
    return kombu.Exchange(name, type="topic", durable=durable, auto_delete=False)


def publish(producer, body, key, exchange=None, **kwargs):
    """One message as Nova's rabbit driver sends it."""
    producer.publish(body, exchange=exchange or nova_exchange(), routing_key=key,
                     content_type="application/json", content_encoding="utf-8",
                     delivery_mode=2, serializer=None, retry=False, **kwargs)


def set_path(msg, path, value):
    """msg with the field at path (a tuple of keys) set to value: a shape Nova may not send."""
    node = msg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return msg
