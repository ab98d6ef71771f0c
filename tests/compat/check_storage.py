"""Drives a Tritontube storage node through a client generated from the original
contract (tests/compat/original_storage.proto) by grpcio-tools: an implementation that
shares no code with the node. Exits non-zero on the first mismatch.

Usage: check_storage.py HOST:PORT STORE_DIR   (generated modules on PYTHONPATH)
"""

import os
import sys

import grpc

import original_storage_pb2 as pb
import original_storage_pb2_grpc as pb_grpc

LIMIT = 256 * 1024 * 1024
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def main():
    address, store_dir = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", LIMIT),
            ("grpc.max_receive_message_length", LIMIT),
        ],
    )
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = pb_grpc.StorageServiceStub(channel)

    files = {
        "v1/manifest.mpd": b'<?xml version="1.0"?>\n<MPD/>\n',
        "v1/init-0.m4s": bytes(range(256)) * 4,
        "v1/empty.m4s": b"",
        "big buck bunny/chunk-0-00001.m4s": os.urandom(20 * 1024 * 1024 + 1),
    }
    for key, data in files.items():
        reply = stub.UploadFile(pb.UploadRequest(key=key, data=data), timeout=120)
        check(reply.success, f"UploadFile {key!r} ({len(data)} bytes)")

    for key, data in files.items():
        reply = stub.DownloadFile(pb.DownloadRequest(key=key), timeout=120)
        check(reply.found and reply.data == data, f"DownloadFile {key!r} returns the bytes")
        # The original's on-disk layout: DIR/{videoId}/{filename}.
        video_id, file_name = key.split("/")
        with open(os.path.join(store_dir, video_id, file_name), "rb") as f:
            check(f.read() == data, f"{key!r} is stored as DIR/{video_id}/{file_name}")

    listed = stub.ListFiles(pb.ListFilesRequest(), timeout=60).keys
    check(sorted(listed) == sorted(files), f"ListFiles lists exactly the keys ({len(listed)})")

    reply = stub.DownloadFile(pb.DownloadRequest(key="v1/missing.m4s"), timeout=60)
    check(not reply.found and reply.data == b"", "DownloadFile of a missing key: found = false")

    for bad in ["../escape", "/etc/passwd", "v1/a/b", "v1/..", "no-slash"]:
        try:
            stub.UploadFile(pb.UploadRequest(key=bad, data=b"x"), timeout=60)
            check(False, f"UploadFile {bad!r} is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"UploadFile {bad!r}: INVALID_ARGUMENT")

    for key in files:
        reply = stub.DeleteFile(pb.DeleteRequest(key=key), timeout=60)
        check(reply.success, f"DeleteFile {key!r}")
        reply = stub.DownloadFile(pb.DownloadRequest(key=key), timeout=60)
        check(not reply.found, f"{key!r} is gone after DeleteFile")
    reply = stub.DeleteFile(pb.DeleteRequest(key="v1/manifest.mpd"), timeout=60)
    check(reply.success, "DeleteFile of an absent key succeeds")
    listed = stub.ListFiles(pb.ListFilesRequest(), timeout=60).keys
    check(len(listed) == 0, "ListFiles is empty after the deletes")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("wire compatibility: all checks passed")


if __name__ == "__main__":
    main()
