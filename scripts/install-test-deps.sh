#!/usr/bin/env bash
# Installs what Tessera's test suite needs beyond Rust. The foundation's tests need no external
# peers (the embedded store is SQLite, compiled in); later issues add PostgreSQL, InfluxDB,
# dcmtk, pynetdicom, python-hl7 and an S3 server here.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
echo "test peers: none needed yet"
