"""rpm: a remote process manager you can drive from telnet, a full-screen TUI or scripts."""

__version__ = "1.0.0"
