"""Programs the server starts: their records and store, supervision, launch and output."""
