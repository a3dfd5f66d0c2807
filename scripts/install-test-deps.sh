#!/usr/bin/env bash
# Installs what Tessera's test suite needs beyond Rust: the external peers the tests talk to.
#   - python-hl7 (PyPI `hl7`): the real MLLP client of the HL7 v2 bridge's end-to-end test.
#   - openssl (Debian): makes the certificates of the MLLP-over-TLS test.
#   - PostgreSQL (Debian `postgresql`: initdb, pg_ctl, postgres) and InfluxDB 1.x (Debian
#     `influxdb`: influxd): the projections' tests start their own servers from these
#     binaries in temp dirs on free ports; the packages' own services are not used.
#   - dcmtk (Debian: echoscu, storescu, findscu, storescp) and Orthanc (Debian): the DIMSE
#     peers of dicom-store's tests and of the C-STORE benchmark. pynetdicom installs Python
#     apps with the same names; the tests call dcmtk's from /usr/bin.
#   - pydicom (its wheel carries the DICOM test files pushed in the tests) and pynetdicom (PyPI).
#   - moto server and s3s-fs: see the S3 block below.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "python3 is required for the HL7 end-to-end tests" >&2
  exit 1
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
missing=()
command -v openssl >/dev/null || missing+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v influxd >/dev/null || missing+=(influxdb)
[ -x /usr/bin/storescu ] || missing+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || command -v Orthanc >/dev/null || missing+=(orthanc)
if [ "${#missing[@]}" -gt 0 ]; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
# The packages start their own services; the tests do not use them, so stop them if running.
for service in postgresql influxdb orthanc; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then $sudo_cmd systemctl stop "$service" || true; fi
done
if ! python3 -c "import hl7" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'hl7>=0.4,<0.5'
fi
python3 -c "import hl7; print('test peers: python-hl7', hl7.__version__)"
if ! python3 -c "import pydicom, pynetdicom" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'pydicom>=3,<4' 'pynetdicom>=2.1'
fi
python3 -c "import pydicom, pynetdicom; print('test peers: pydicom', pydicom.__version__, 'pynetdicom', pynetdicom.__version__)"
echo "test peers: $(/usr/bin/storescu --version | head -1)"
echo "test peers: $(ls -d /usr/lib/postgresql/*/bin | tail -1)/postgres $("$(ls -d /usr/lib/postgresql/*/bin | tail -1)/postgres" --version)"
echo "test peers: influxd $(influxd version 2>/dev/null | head -1)"

# --- S3 peers of dicom-store's S3 object store tests (dicom-store/tests/s3.rs) ---
#   - moto (PyPI `moto[server]`, `moto_server`): S3 with lifecycle, SSE, multipart, storage
#     classes and restores. 5.2.5 or later: earlier 5.2 releases answer CompleteMultipartUpload
#     with the wrong XML root (getmoto/moto#10055), which the AWS Rust SDK refuses.
#   - s3s-fs (crates.io, into ~/.cargo/bin): S3 over a directory that checks SigV4 and the
#     x-amz-checksum-* values of uploads.
python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.2.5'
s3s_fs="$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")"
if [ ! -x "$s3s_fs" ]; then
  # Its own temporary target dir, so an exported CARGO_TARGET_DIR of the workspace is not locked.
  env -u CARGO_TARGET_DIR cargo install s3s-fs@0.14.1 --features binary --locked
fi
echo "test peers: moto_server $(python3 -c 'import moto; print(moto.__version__)')"
echo "test peers: $("$s3s_fs" --version)"
# --- end of S3 peers ---
