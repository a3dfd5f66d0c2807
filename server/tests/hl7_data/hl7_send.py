#!/usr/bin/env python3
"""Sends HL7 v2 messages to an MLLP listener with python-hl7 and prints each ACK as a JSON line.

Used by server/tests/hl7_e2e.rs as an independent, external sender: the messages are read
from files (one segment per line, LF or CR), parsed by python-hl7 (so a message python-hl7
cannot read is a broken test input, not a server fault), sent over one connection in the
order given (a file named twice is sent twice: a retry), and for every message this prints

    {"file": ..., "control_id": ..., "sent": <the exact text sent>, "ack": <the ACK text>,
     "msa1": ..., "msa2": ..., "msa3": ...}

where the MSA fields are read by python-hl7 from the ACK.

Usage: hl7_send.py HOST PORT FILE [FILE ...]
"""

import json
import os
import sys

import hl7
import hl7.client

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


def read_message(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    segments = [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]
    return hl7.parse("\r".join(segments))


def receive_rest(client, data):
    """python-hl7 returns what one recv() gave; read on until the frame's end block."""
    while not data.endswith(END_BLOCK):
        more = client.socket.recv(4096)
        if not more:
            raise RuntimeError("connection closed inside the ACK frame after %d bytes" % len(data))
        data += more
    if not data.startswith(START_BLOCK):
        raise RuntimeError("reply does not start with the MLLP start block: %r" % data[:16])
    return data[len(START_BLOCK) : -len(END_BLOCK)]


def field(message, segment, n):
    try:
        return str(message.segment(segment)[n])
    except (KeyError, IndexError):
        return ""


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    host, port, files = argv[1], int(argv[2]), argv[3:]
    with hl7.client.MLLPClient(host, port) as client:
        client.socket.settimeout(20)
        for path in files:
            message = read_message(path)
            sent = str(message)
            reply = client.send_message(message)
            ack_text = receive_rest(client, reply).decode("utf-8")
            ack = hl7.parse(ack_text)
            print(
                json.dumps(
                    {
                        "file": os.path.basename(path),
                        "control_id": str(message.segment("MSH")[10]),
                        "sent": sent,
                        "ack": ack_text,
                        "msa1": field(ack, "MSA", 1),
                        "msa2": field(ack, "MSA", 2),
                        "msa3": field(ack, "MSA", 3),
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
