"""The transports and what they speak: OpenStack through openstacksdk (cloud, inventory),
SSH (sshclient), nova-manage (novamanage), virsh (libvirt, hypervisors) and the audit's report
files (report_files). No import of dvremedy.model or dvremedy.steps."""
