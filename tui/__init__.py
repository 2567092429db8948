"""rpm-tui: the operator's full-screen client for rpm servers."""
