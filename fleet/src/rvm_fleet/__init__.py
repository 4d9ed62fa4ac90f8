"""Control-node tools for the RVM fleet (never installed on a device)."""
