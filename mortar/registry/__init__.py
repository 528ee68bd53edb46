"""`mortar registry`: a plain-HTTP image registry for the hosts of a site (Debian's docker-registry)."""
