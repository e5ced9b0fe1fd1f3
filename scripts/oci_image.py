#!/usr/bin/env python3
"""Packs a directory tree into an OCI image layout (and optionally an OCI archive), reproducibly:
same input tree -> byte-identical blobs and the same manifest digest. No container daemon needed.

  oci_image.py --tree DIR --out LAYOUT_DIR --tag v0.1.0 [--arch amd64] [--archive FILE.tar]
               [--entrypoint /usr/local/bin/x] [--user 65532:65532] [--label key=value ...]

One gzip layer: entries sorted by name, owner 0:0, mtime SOURCE_DATE_EPOCH (default 0), modes kept
(minus group/other write), gzip header without a name or time. index.json carries `platform`, which
the Talos imager needs to pick the descriptor (reference/packaging.md section 1.6).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile


def blob(layout, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def add_tree(tar, tree, mtime):
    """Adds every entry under `tree` to `tar`: sorted, owned by 0:0, at `mtime`, no group/other
    write bit, no pax times; so the same tree always gives the same bytes."""
    entries = []
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            entries.append(os.path.join(root, name))
    for path in sorted(entries, key=lambda p: os.path.relpath(p, tree)):
        rel = os.path.relpath(path, tree)
        st = os.lstat(path)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            sys.exit("oci_image: %s is not a file, directory or symlink" % rel)
        info = tar.gettarinfo(path, arcname=rel)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = mtime
        info.mode = stat.S_IMODE(st.st_mode) & ~0o022
        info.pax_headers = {}
        if info.isreg():
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)


def layer_tar(tree, mtime):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_tree(tar, tree, mtime)
    uncompressed = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(uncompressed)
    return uncompressed, compressed.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--archive")
    ap.add_argument("--entrypoint")
    ap.add_argument("--user")
    ap.add_argument("--label", action="append", default=[])
    args = ap.parse_args()

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    os.makedirs(os.path.join(args.out, "blobs", "sha256"), exist_ok=True)
    uncompressed, compressed = layer_tar(args.tree, mtime)
    layer = blob(args.out, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": args.arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(uncompressed).hexdigest()]},
        "config": {},
    }
    if args.entrypoint:
        config["config"]["Entrypoint"] = [args.entrypoint]
    if args.user:
        config["config"]["User"] = args.user
    if args.label:
        config["config"]["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    config_desc = blob(args.out, json.dumps(config, sort_keys=True, separators=(",", ":")).encode(),
                       "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer]}
    manifest_desc = blob(args.out, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(),
                         "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["platform"] = {"os": "linux", "architecture": args.arch}
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": args.tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(args.out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    if args.archive:
        # The same layout as one tar (skopeo's oci-archive), itself reproducible.
        with tarfile.open(args.archive, "w", format=tarfile.PAX_FORMAT) as tar:
            add_tree(tar, args.out, mtime)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
