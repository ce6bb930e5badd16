"""Stage ``match``: MetaCLIP substring matching of captions against the query list."""
