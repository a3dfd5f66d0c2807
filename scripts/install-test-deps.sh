#!/usr/bin/env bash
# Installs what Tessera's test suite needs beyond Rust: the external peers the tests talk to.
#   - python-hl7 (PyPI `hl7`): the real MLLP client of the HL7 v2 bridge's end-to-end test.
#   - openssl (Debian): makes the certificates of the MLLP-over-TLS test.
# Later issues add PostgreSQL, InfluxDB, dcmtk, pynetdicom and an S3 server here.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "python3 is required for the HL7 end-to-end tests" >&2
  exit 1
fi
if ! command -v openssl >/dev/null; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq openssl
fi
if ! python3 -c "import hl7" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'hl7>=0.4,<0.5'
fi
python3 -c "import hl7; print('test peers: python-hl7', hl7.__version__)"
