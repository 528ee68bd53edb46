"""mortar's guest image: a small Linux made offline from Debian packages (build.sh, init)."""
