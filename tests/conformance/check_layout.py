#!/usr/bin/env python3
"""Independent checks of an OCI image layout bareroot wrote.

  check_layout.py SCHEMA_DIR LAYOUT [EPOCH]

1. Every JSON document (oci-layout, index.json, indexes, manifests, configs)
   validates against the OCI image-spec JSON schemas in SCHEMA_DIR, with
   jsonschema (Draft 4, the schemas' own draft); every manifest and index
   has its mediaType; every blob hashes to its name and matches its size.
2. Every gzip layer has a fixed header (mtime bytes 4-7 zero); every layer's
   uncompressed sha256 is its diff_id; Python's tarfile (not the tar crate
   bareroot writes with) reads it and finds entries sorted by path, parents
   before children, one format (ustar, PAX records only as extensions),
   empty user and group names, every mtime equal to the config's epoch
   (for an image on a base: its own, last layer; the base's are kept as
   they are and only their sizes and diff_ids are checked).
Prints one line per problem and exits 1 if there is any.
"""
import gzip, hashlib, io, json, os, sys, tarfile

import jsonschema
import referencing
from referencing.jsonschema import DRAFT4

schema_dir, layout = sys.argv[1], sys.argv[2]
problems = []


def strip_ids(node):
    if isinstance(node, dict):
        return {k: strip_ids(v) for k, v in node.items() if k != "id"}
    if isinstance(node, list):
        return [strip_ids(v) for v in node]
    return node


resources = {}
for name in os.listdir(schema_dir):
    if name.endswith(".json"):
        with open(os.path.join(schema_dir, name)) as f:
            contents = strip_ids(json.load(f))
        uri = "file://" + os.path.join(os.path.abspath(schema_dir), name)
        contents["id"] = uri
        resources[name] = (uri, contents)
registry = referencing.Registry().with_resources(
    (uri, referencing.Resource.from_contents(c, default_specification=DRAFT4))
    for uri, c in resources.values()
)


def validate(doc, schema_name, what):
    uri, schema = resources[schema_name]
    v = jsonschema.Draft4Validator(schema, registry=registry)
    for e in v.iter_errors(doc):
        problems.append(f"{what}: {schema_name}: {e.message}")


def blob(digest):
    path = os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    with open(path, "rb") as f:
        data = f.read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        problems.append(f"blob {digest} does not hash to its name")
    return data


def check_layer(desc, diff_id, epoch, audit=True):
    data = blob(desc["digest"])
    if len(data) != desc["size"]:
        problems.append(f"layer {desc['digest']}: {len(data)} bytes, the descriptor says {desc['size']}")
    mt = desc["mediaType"]
    if mt.endswith("+gzip"):
        if data[:3] != b"\x1f\x8b\x08" or data[4:8] != b"\0\0\0\0":
            problems.append(f"layer {desc['digest']}: gzip header not fixed (mtime set)")
        raw = gzip.decompress(data)
    elif mt.endswith("+zstd"):
        return  # no independent zstd reader in the standard library
    else:
        raw = data
    if "sha256:" + hashlib.sha256(raw).hexdigest() != diff_id:
        problems.append(f"layer {desc['digest']}: diff_id mismatch")
    if not audit:
        return
    names = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as t:
        for m in t.getmembers():
            name = m.name.rstrip("/")
            names.append(name)
            if m.uname or m.gname:
                problems.append(f"{name}: user/group names {m.uname!r}/{m.gname!r}")
            if epoch is not None and int(m.mtime) != epoch:
                problems.append(f"{name}: mtime {m.mtime} != epoch {epoch}")
            for k in m.pax_headers:
                if k not in ("path", "linkpath", "size"):
                    problems.append(f"{name}: unexpected PAX record {k}")
    if names != sorted(names):
        problems.append(f"layer {desc['digest']}: entries not sorted by path")
    seen = set()
    for n in names:
        parent = os.path.dirname(n)
        if parent and parent not in seen:
            problems.append(f"layer {desc['digest']}: {n} comes before its parent {parent}")
        seen.add(n)


def rfc3339_to_epoch(s):
    import datetime
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())


def check_manifest(desc):
    m = json.loads(blob(desc["digest"]))
    if len(blob(desc["digest"])) != desc["size"]:
        problems.append(f"manifest {desc['digest']}: size mismatch")
    validate(m, "image-manifest-schema.json", f"manifest {desc['digest']}")
    if m.get("mediaType") != desc["mediaType"]:
        problems.append(f"manifest {desc['digest']}: mediaType {m.get('mediaType')!r}")
    if m.get("artifactType"):
        return
    config = json.loads(blob(m["config"]["digest"]))
    validate(config, "config-schema.json", f"config {m['config']['digest']}")
    epoch = rfc3339_to_epoch(config["created"]) if "created" in config else None
    ids = config["rootfs"]["diff_ids"]
    if len(ids) != len(m["layers"]):
        problems.append(f"manifest {desc['digest']}: layers vs diff_ids")
    # A stacked image's base layers are the base's, kept as they are: only
    # their sizes and diff_ids are checked; bareroot's own layer (the last)
    # is audited.
    base = "org.opencontainers.image.base.name" in m.get("annotations", {})
    for i, (layer, diff_id) in enumerate(zip(m["layers"], ids)):
        check_layer(layer, diff_id, epoch, audit=not base or i == len(ids) - 1)


def check_index(doc, what):
    validate(doc, "image-index-schema.json", what)
    for d in doc["manifests"]:
        if d["mediaType"] == "application/vnd.oci.image.index.v1+json":
            inner = json.loads(blob(d["digest"]))
            if inner.get("mediaType") != d["mediaType"]:
                problems.append(f"index {d['digest']}: mediaType {inner.get('mediaType')!r}")
            check_index(inner, f"index {d['digest']}")
        else:
            check_manifest(d)


with open(os.path.join(layout, "oci-layout")) as f:
    validate(json.load(f), "image-layout-schema.json", "oci-layout")
with open(os.path.join(layout, "index.json")) as f:
    top = json.load(f)
check_index(top, "index.json")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
