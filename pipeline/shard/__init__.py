"""Stage ``shard``: the kept samples -> webdataset tars with Parquet indexes."""
