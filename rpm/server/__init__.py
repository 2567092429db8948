"""The rpm server: options and service, connections and their protocol, commands."""
