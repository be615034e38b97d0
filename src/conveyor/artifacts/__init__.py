"""Content-addressed artifacts: the blob store (blobs.py) and reproducible tarballs
(tarballs.py). Metadata rows live in storage; this package does no database I/O."""
