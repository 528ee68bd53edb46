"""The multi-host test bed: node containers on this machine that stand in for real hosts.

Each node runs sshd (and, once mortar starts it over SSH, its own dockerd) on a dedicated
docker network, so a multi-node deployment can be exercised end to end on one machine.
"""
