"""Inventories several unit test modules share."""

# Three control hosts (control1 also the network node) and one compute host.
THREE_CONTROL_HOSTS = """\
[control]
control1 api_address=10.0.0.11
control2 api_address=10.0.0.12
control3 api_address=10.0.0.13
[network]
control1
[compute]
compute1 api_address=10.0.0.21
"""
