"""What every page and API route shares: templates, the signed-in viewer, guards, errors and the
request's transaction, one module each."""
