"""The drivers that ship with ipamkit, each a plugin of its own."""
