"""The build stages from crawl to shards: ingest, text, match, balance, download, image, shard."""
