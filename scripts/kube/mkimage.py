#!/usr/bin/env python3
"""Write a one-layer OCI image archive straight from a directory, for `ctr images import`.

usage: mkimage.py OUT.tar NAME ROOTFS_DIR CONFIG_JSON

  OUT.tar      the archive to write (written beside as OUT.tar.tmp, then renamed)
  NAME         the image reference containerd records, e.g. ethwatch.local/geth:v1.17.10
               (the `io.containerd.image.name` annotation; tag "latest" when NAME has none)
  ROOTFS_DIR   the image's file system; everything under it becomes the one layer, owned by
               root:root with mtime 0 (so the same tree gives the same digest)
  CONFIG_JSON  the image config's "config" object, e.g. '{"Entrypoint": ["/pause"]}'; a PATH is
               added to Env when it names none

Prints the manifest digest. No registry, no daemon and no umoci/skopeo/buildah: the archive is an
OCI image layout (oci-layout, index.json, blobs/sha256/...) with an uncompressed layer, which
`ctr -n k8s.io images import OUT.tar` (scripts/kube-local.sh import) accepts. Pods must use
`imagePullPolicy: Never`: a missing image would otherwise make containerd try to pull it.

Ported from the kube-local reference recipe (lib/mkimage.py); the layer is streamed through a
temporary file instead of memory, so client binaries of a few hundred MB are fine.
"""
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, f):
        self.f, self.h, self.size = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.f.write(b)
        self.h.update(b)
        self.size += len(b)
        return len(b)


def add_tree(tf, rootfs):
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, n)
            ti = tf.gettarinfo(full, os.path.relpath(full, rootfs))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mtime = 0
            if ti.isreg():
                with open(full, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)


def ref_name(name):
    """The tag of NAME (what org.opencontainers.image.ref.name carries)."""
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__.split("\n\n")[1])
    out, name, rootfs, cfg = argv[1], argv[2], argv[3], json.loads(argv[4])
    if not os.path.isdir(rootfs):
        sys.exit(f"mkimage.py: {rootfs} is not a directory")
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    cfg = dict(cfg)
    if not any(e.startswith("PATH=") for e in cfg.get("Env", [])):
        cfg["Env"] = [DEFAULT_PATH, *cfg.get("Env", [])]

    out_dir = os.path.dirname(os.path.abspath(out))
    with tempfile.TemporaryFile(dir=out_dir) as layer:
        hw = HashingWriter(layer)
        with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            add_tree(tf, rootfs)
        ldig, lsize = "sha256:" + hw.h.hexdigest(), hw.size
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [ldig]},
            "history": [{"created_by": "ethwatch scripts/kube/mkimage.py"}],
        }, sort_keys=True).encode()
        cdig = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig,
                        "size": lsize}],
        }, sort_keys=True).encode()
        mdig = "sha256:" + hashlib.sha256(manifest).hexdigest()
        index = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": mdig, "size": len(manifest),
                           "platform": {"architecture": "amd64", "os": "linux"},
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": ref_name(name)}}],
        }, sort_keys=True).encode()

        def blob(tf, path, data=None, size=None, fileobj=None):
            ti = tarfile.TarInfo(path)
            ti.size = len(data) if data is not None else size
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data) if data is not None else fileobj)

        with tarfile.open(out + ".tmp", "w") as tf:
            blob(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            blob(tf, "index.json", index)
            layer.seek(0)
            blob(tf, "blobs/sha256/" + ldig.split(":")[1], size=lsize, fileobj=layer)
            for d, data in ((cdig, config), (mdig, manifest)):
                blob(tf, "blobs/sha256/" + d.split(":")[1], data)
    os.replace(out + ".tmp", out)
    print(mdig)


if __name__ == "__main__":
    main(sys.argv)
