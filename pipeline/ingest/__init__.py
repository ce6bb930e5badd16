"""Stage ``ingest``: crawl and pool files -> unique candidate (url, text) pairs."""
