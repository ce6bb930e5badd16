"""Stage ``download``: fetch each candidate's image safely, resize it, store its bytes."""
