"""One router per resource: search, embed, collections, pieces, and the page with its health check."""
