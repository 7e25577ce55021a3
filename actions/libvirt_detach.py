"""st2 glue for dvremedy.steps.remedy.libvirt_detach (see libvirt_detach.yaml)."""
from st2common.runners.base_action import Action

from dvremedy.runner import run_step
from dvremedy.steps.remedy import libvirt_detach


class LibvirtDetach(Action):
    def run(self, server_id, volume_id, cloud="", allow=False):
        return run_step(self.config, libvirt_detach, self.logger, cloud=cloud or None,
                        server_id=server_id, volume_id=volume_id, allow=allow)
