"""The audit log: what facilitators and operators did, for the community's facilitators."""
