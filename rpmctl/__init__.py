"""rpmctl: a command-line client of rpm servers for scripts and quick work."""
