"""st2 glue for dvremedy.steps.remedy.identify (see identify.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import identify


class Identify(Action):
    def run(self, server_id, volume_id, cloud="", detach=True, allow_libvirt_detach=False,
            mode="manual"):
        return run_step(self.config, identify, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id, detach=detach,
                        allow_libvirt_detach=allow_libvirt_detach, mode=mode)
