#!/usr/bin/env python3
"""Rewrites jars for the GPU machine's pack: every entry stored (not deflated), so that the one xz stream over the
whole pack compresses across the jars (xz on deflated jars saves almost nothing), and native libraries for other
platforms than linux/x86_64 dropped, and netty's OpenSSL binding (zstd-jni, snappy, lz4, aparapi-jni and grpc-netty-shaded carry them for every
OS: ~30 MB). Entry order, names, times and content are kept, so manifests and (signed jars') digests stay valid.
Usage: jar_store.py OUT_DIR JAR...
"""
import os
import sys
import zipfile

NATIVE = ('.so', '.dll', '.dylib', '.jnilib', '.a')


def foreign_native(name):
    n = name.lower()
    if not n.endswith(NATIVE):
        return False
    if 'tcnative' in n:  # OpenSSL for TLS: the benches run plaintext, and grpc-java falls back to the JDK's TLS
        return True
    # netty's epoll transport is Linux-only and its library says so only by the word (no "linux" in
    # libio_grpc_netty_shaded_netty_transport_native_epoll_x86_64.so): kept, else gRPC falls back to NIO on the GPU machine
    linux = ('linux' in n or 'epoll' in n or 'io_uring' in n) and 'android' not in n
    x64 = 'x86_64' in n or 'amd64' in n
    return not (linux and x64)


def main():
    out, jars = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    dropped = 0
    for jar in jars:
        dest = os.path.join(out, os.path.basename(jar))
        with zipfile.ZipFile(jar) as src, zipfile.ZipFile(dest, 'w', zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                if foreign_native(info.filename):
                    dropped += info.file_size
                    continue
                data = src.read(info)
                info.compress_type = zipfile.ZIP_STORED
                dst.writestr(info, data)
    print(f"jar_store: {len(jars)} jars stored uncompressed, {dropped / 1048576:.1f} MiB of foreign native libraries dropped")


if __name__ == '__main__':
    main()
