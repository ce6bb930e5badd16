"""Fetching images from the web safely: URL policy, HTTP client, per-host politeness.

- :mod:`.policy`: which URLs and addresses may be fetched (SSRF guard).
- :mod:`.client`: an HTTP client that connects only to approved addresses, with a total
  time budget per image, a streaming size cap, redirects checked hop by hop and retries.
- :mod:`.deadline`: the time budget per image and the socket watchdog that enforces it.
- :mod:`.hosts`: per-host concurrency and rate limits.
- :mod:`.robots`: X-Robots-Tag opt-out, with img2dataset's semantics.
"""
