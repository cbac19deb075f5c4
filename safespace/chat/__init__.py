"""chat area: a community's chat receives round invitations, reminders and "results are out"."""
