"""mortar: OpenStack in containers: image builder and deployer."""

__version__ = "0.1.0"
