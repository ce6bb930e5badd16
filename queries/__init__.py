"""The query list (CLIP's 500,000 queries): Wikipedia words and bigrams, popular titles, WordNet."""
