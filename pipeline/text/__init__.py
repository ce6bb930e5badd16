"""Stage ``text``: caption normalisation, caption filters and language identification."""
