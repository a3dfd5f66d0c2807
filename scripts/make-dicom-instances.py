#!/usr/bin/env python3
"""Writes COUNT Part 10 CT instances of SIDE x SIDE 16-bit random pixels (one study, one series,
fresh UIDs) into OUT_DIR, from the pydicom wheel's CT_small.dcm. Used by the C-STORE benchmark
and the DIMSE crash test: python3 make-dicom-instances.py OUT_DIR SIDE COUNT"""
import os
import sys

import pydicom
from pydicom.uid import generate_uid

src = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "CT_small.dcm")
out, side, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
study, series = generate_uid(), generate_uid()
for i in range(count):
    ds = pydicom.dcmread(src)
    ds.Rows = ds.Columns = side
    ds.PixelData = os.urandom(side * side * 2)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = i + 1
    ds.save_as(os.path.join(out, "%05d.dcm" % i), enforce_file_format=True)
