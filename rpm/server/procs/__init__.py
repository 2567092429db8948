"""The machine's processes: identity, sampling the table, details, and signalling them."""
