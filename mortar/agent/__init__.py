"""The host agent: the code that runs on every host, locally or shipped there by Ansible.

It observes the host (facts), plans what its desired state needs, and applies only that,
one registered step at a time (`steps`). It speaks the wire format (`wire`) and depends on
nothing but the standard library, the engine seam and mortar's file and record helpers.
"""
