#!/usr/bin/env python3
"""Write the regression corpus of hostile inputs: tests/regressions/elf/*.elf
and tests/regressions/recipe/*.toml.

Each file is a small, valid ELF64 x86-64 shared object (PT_INTERP,
PT_LOAD, PT_DYNAMIC with DT_NEEDED, a .gnu.version_r, a .note.dlopen note
and a .go.buildinfo section) with one field broken the way a published
parser bug was triggered (goblin issues 23 and 120, goblin PR 306, fuzzers'
OOM and hang classes) or the way bareroot's own fuzz targets look for.
The recipes are the parser's hostile cases: nesting deep enough to
overflow a recursive parser's stack, invalid UTF-8, NUL bytes, huge numbers
and keys. Each directory's EXPECT lists what bareroot must do with each
file; tests/integration/regressions.rs checks it. The bytes are committed:
run this again only to add cases (the output for existing names must not
move).

    python3 scripts/gen-regressions.py
"""

import json
import os
import struct
import sys

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "regressions")
OUT = os.path.join(HERE, "elf")

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RUNPATH = 0, 1, 5, 10, 14, 29
DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF
SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_NOTE = 1, 3, 6, 7
SHT_GNU_VERNEED = 0x6FFFFFFE


def build():
    """The base object and the file offsets of every field a case breaks."""
    at = {}
    ehsize, phentsize, shentsize = 64, 56, 64
    phnum = 4
    body = bytearray()
    base = ehsize + phnum * phentsize

    def put(name, data, align=8):
        while (base + len(body)) % align:
            body.append(0)
        at[name] = base + len(body)
        body.extend(data)
        return at[name]

    interp = b"/lib64/ld-linux-x86-64.so.2\0"
    put("interp", interp, 1)
    dynstr = bytearray(b"\0")
    names = {}
    for s in ["libc.so.6", "libregress.so.1", "$ORIGIN/../lib", "GLIBC_2.34"]:
        names[s] = len(dynstr)
        dynstr.extend(s.encode() + b"\0")
    put("dynstr", bytes(dynstr), 1)
    # .gnu.version_r: one Verneed (libc.so.6) with one Vernaux (GLIBC_2.34).
    vn = struct.pack("<HHIII", 1, 1, names["libc.so.6"], 16, 0)
    vna = struct.pack("<IHHII", 0x069691B4, 0, 2, names["GLIBC_2.34"], 0)
    put("verneed", vn + vna, 4)
    # .note.dlopen: the FDO dlopen note (owner "FDO", type 0x407c0c0a).
    payload = json.dumps([{"feature": "x", "soname": ["libz.so.1"], "priority": "recommended"}]).encode() + b"\0"
    while len(payload) % 4:
        payload += b"\0"
    note = struct.pack("<III", 4, len(payload), 0x407C0C0A) + b"FDO\0" + payload
    put("note", note, 4)
    # .go.buildinfo: the magic and a version/modinfo pair in the inline format.
    gob = b"\xff Go buildinf:" + bytes([8, 2]) + b"\0" * 16
    gob += bytes([8]) + b"go1.22.1" + bytes([0])
    put("gobuildinfo", gob, 16)
    dyn = []
    dyn.append((DT_NEEDED, names["libc.so.6"]))
    dyn.append((DT_SONAME, names["libregress.so.1"]))
    dyn.append((DT_RUNPATH, names["$ORIGIN/../lib"]))
    dyn.append((DT_STRTAB, at["dynstr"]))
    dyn.append((DT_STRSZ, len(dynstr)))
    dyn.append((DT_VERNEED, at["verneed"]))
    dyn.append((DT_VERNEEDNUM, 1))
    dyn.append((DT_NULL, 0))
    dynamic = b"".join(struct.pack("<QQ", t, v) for t, v in dyn)
    put("dynamic", dynamic, 8)
    for i, (t, _) in enumerate(dyn):
        at["dyn_%d" % t] = at["dynamic"] + 16 * i
    shstr = bytearray(b"\0")
    sec_names = {}
    for s in [".dynstr", ".gnu.version_r", ".note.dlopen", ".go.buildinfo", ".dynamic", ".shstrtab"]:
        sec_names[s] = len(shstr)
        shstr.extend(s.encode() + b"\0")
    put("shstrtab", bytes(shstr), 1)
    total_body = base + len(body)
    shoff = (total_body + 7) // 8 * 8
    while base + len(body) < shoff:
        body.append(0)

    sections = [
        (0, 0, 0, 0, 0, 0, 0, 0),
        (sec_names[".dynstr"], SHT_STRTAB, at["dynstr"], len(dynstr), 0, 0, 1, 0),
        (sec_names[".gnu.version_r"], SHT_GNU_VERNEED, at["verneed"], len(vn + vna), 1, 1, 4, 0),
        (sec_names[".note.dlopen"], SHT_NOTE, at["note"], len(note), 0, 0, 4, 0),
        (sec_names[".go.buildinfo"], SHT_PROGBITS, at["gobuildinfo"], len(gob), 0, 0, 16, 0),
        (sec_names[".dynamic"], SHT_DYNAMIC, at["dynamic"], len(dynamic), 1, 0, 8, 16),
        (sec_names[".shstrtab"], SHT_STRTAB, at["shstrtab"], len(shstr), 0, 0, 1, 0),
    ]
    shtab = bytearray()
    for i, (name, typ, off, size, link, info, align, entsize) in enumerate(sections):
        at["sh_%d" % i] = shoff + len(shtab)
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link,
        # sh_info, sh_addralign, sh_entsize (addresses equal offsets here).
        shtab += struct.pack("<IIQQQQIIQQ", name, typ, 2 if typ else 0, off, off, size, link, info, align, entsize)
    body.extend(shtab)
    total = base + len(body)

    eh = bytearray(b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8)
    eh += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, ehsize, shoff, 0, ehsize, phentsize, phnum,
                      shentsize, len(sections), len(sections) - 1)
    at["e_phoff"], at["e_shoff"] = 32, 40
    at["e_phnum"], at["e_shnum"], at["e_shstrndx"] = 56, 60, 62
    ph = bytearray()
    segs = [
        (PT_INTERP, 4, at["interp"], len(interp), 1),
        (PT_LOAD, 5, 0, total, 0x1000),
        (PT_DYNAMIC, 6, at["dynamic"], len(dynamic), 8),
        (PT_NOTE, 4, at["note"], len(note), 4),
    ]
    for i, (typ, flags, off, size, align) in enumerate(segs):
        at["ph_%d" % i] = ehsize + len(ph)
        ph += struct.pack("<IIQQQQQQ", typ, flags, off, off, off, size, size, align)
    out = bytes(eh + ph + body)
    assert len(out) == total, (len(out), total)
    return bytearray(out), at


def q(b, off, v):
    struct.pack_into("<Q", b, off, v)


def i32(b, off, v):
    struct.pack_into("<I", b, off, v)


def h16(b, off, v):
    struct.pack_into("<H", b, off, v)


CASES = {}


def case(name, expect, why):
    def deco(f):
        CASES[name] = (expect, why, f)
        return f
    return deco


@case("base", "ok", "the unbroken object every other case starts from")
def _(b, at):
    pass


@case("phoff-overflow", "error", "e_phoff = 2^64-1: offset arithmetic overflowed (goblin issue 23)")
def _(b, at):
    q(b, at["e_phoff"], 0xFFFFFFFFFFFFFFFF)


@case("phnum-past-eof", "error", "65535 program headers from near the end: OOM or out-of-bounds reads (goblin issue 120 class)")
def _(b, at):
    q(b, at["e_phoff"], len(b) - 8)
    h16(b, at["e_phnum"], 0xFFFF)


@case("shoff-overflow", "ok", "e_shoff near 2^64: section headers unreadable; program headers still give the facts")
def _(b, at):
    q(b, at["e_shoff"], 0xFFFFFFFFFFFFFFF0)


@case("shnum-past-eof", "ok", "65535 section headers running past the end (goblin issue 120 class)")
def _(b, at):
    h16(b, at["e_shnum"], 0xFFFF)


@case("extended-shnum-huge", "ok", "extended numbering (e_shnum 0) whose section 0 claims 2^32-1 sections: must not allocate them")
def _(b, at):
    h16(b, at["e_shnum"], 0)
    q(b, at["sh_0"] + 32, 0xFFFFFFFF)


@case("shstrndx-out-of-range", "ok", "e_shstrndx = 0xfffe: no section names, no panic")
def _(b, at):
    h16(b, at["e_shstrndx"], 0xFFFE)


@case("load-offset-overflow", "error", "PT_LOAD p_offset + p_filesz overflows (goblin PR 306)")
def _(b, at):
    q(b, at["ph_1"] + 8, 0xFFFFFFFFFFFF0000)
    q(b, at["ph_1"] + 32, 0x20000)


@case("dynamic-past-eof", "error", "PT_DYNAMIC p_filesz far beyond the file")
def _(b, at):
    q(b, at["ph_2"] + 32, 0x7FFFFFFFFFFF)


@case("dynamic-no-null", "ok", "the dynamic array has no DT_NULL before the end of its segment")
def _(b, at):
    q(b, at["dyn_%d" % DT_NULL], 21)  # DT_DEBUG in the terminator's place


@case("needed-empty", "error", "a DT_NEEDED whose name is the empty string")
def _(b, at):
    q(b, at["dyn_%d" % DT_NEEDED] + 8, 0)


@case("strtab-unmapped", "error", "DT_STRTAB points at an address no segment maps")
def _(b, at):
    q(b, at["dyn_%d" % DT_STRTAB] + 8, 0x7FFF00000000)


@case("needed-past-strtab", "error", "DT_NEEDED's name offset is past the string table")
def _(b, at):
    q(b, at["dyn_%d" % DT_NEEDED] + 8, 0x7FFFFFFF)


@case("strsz-huge", "error", "DT_STRSZ = 2^64-1")
def _(b, at):
    q(b, at["dyn_%d" % DT_STRSZ] + 8, 0xFFFFFFFFFFFFFFFF)


@case("verneednum-huge", "ok", "DT_VERNEEDNUM = 2^32-1 with vn_next 0: iterating by the count alone never ends")
def _(b, at):
    q(b, at["dyn_%d" % DT_VERNEEDNUM] + 8, 0xFFFFFFFF)


@case("vernaux-count-huge", "ok", "vn_cnt = 65535 with vna_next 0: the same auxiliary entry again and again")
def _(b, at):
    h16(b, at["verneed"] + 2, 0xFFFF)


@case("verneed-past-eof", "ok", "DT_VERNEED points past the end of the file")
def _(b, at):
    q(b, at["dyn_%d" % DT_VERNEED] + 8, len(b) + 0x1000)


@case("interp-no-nul", "error", "PT_INTERP's last byte is not the NUL that ends the path (the kernel refuses it)")
def _(b, at):
    b[at["interp"] + len(b"/lib64/ld-linux-x86-64.so.2")] = ord("x")


@case("interp-empty", "error", "PT_INTERP holds only its NUL: an empty interpreter path")
def _(b, at):
    q(b, at["ph_0"] + 8, at["interp"] + len(b"/lib64/ld-linux-x86-64.so.2"))
    q(b, at["ph_0"] + 32, 1)


@case("interp-past-eof", "error", "PT_INTERP's size is far beyond the file")
def _(b, at):
    q(b, at["ph_0"] + 32, 0x10000000)


@case("note-namesz-overflow", "ok", "a note whose namesz is 2^32-16: the note walk must not overflow or over-read")
def _(b, at):
    i32(b, at["note"], 0xFFFFFFF0)


@case("dlopen-note-bad-json", "ok", "the .note.dlopen payload is not JSON")
def _(b, at):
    off = at["note"] + 16
    b[off:off + 8] = b"{[}]\"\\\0\0"


@case("go-buildinfo-varint-overflow", "ok", "the Go build info's length varint never ends")
def _(b, at):
    off = at["gobuildinfo"] + 32
    b[off:off + 11] = b"\xff" * 11


@case("class-invalid", "error", "EI_CLASS = 3")
def _(b, at):
    b[4] = 3


@case("truncated-header", "error", "the file ends inside the ELF header")
def _(b, at):
    del b[40:]


@case("magic-only", "error", "nothing but the four magic bytes")
def _(b, at):
    del b[4:]


@case("big-endian-garbage", "error", "EI_DATA says big-endian over little-endian fields: every count and offset is huge")
def _(b, at):
    b[5] = 2


@case("needs-itself", "ok", "DT_NEEDED names the object's own soname: the closure must end")
def _(b, at):
    q(b, at["dyn_%d" % DT_NEEDED] + 8, q_name(b, at, "libregress.so.1"))


def q_name(b, at, s):
    dynstr = at["dynstr"]
    i = bytes(b).index(s.encode() + b"\0", dynstr)
    return i - dynstr


RECIPES = {
    "deep-array": ("error", "an array nested 100000 deep (a recursive parser overflows its stack)",
                   b"name = \"x\"\nv = " + b"[" * 100000 + b"]" * 100000 + b"\n"),
    "deep-inline-table": ("error", "inline tables nested 50000 deep",
                          b"name = \"x\"\nv = " + b"{a=" * 50000 + b"1" + b"}" * 50000 + b"\n"),
    "deep-dotted-key": ("error", "a dotted key of 100000 parts",
                        b"name = \"x\"\n" + b".".join([b"a"] * 100000) + b" = 1\n"),
    "invalid-utf8": ("error", "bytes that are not UTF-8 inside a string",
                     b"name = \"x\\xff\xfe\"\n"),
    "nul-byte": ("error", "a NUL byte in a key and in a value",
                 b"name = \"a\x00b\"\n[con\x00fig]\n"),
    "huge-integer": ("error", "an epoch of 10^40",
                     b"name = \"x\"\nepoch = 1" + b"0" * 40 + b"\n"),
    "huge-key": ("error", "a 128 KiB key",
                 b"name = \"x\"\n" + b"k" * (128 << 10) + b" = 1\n"),
    "bom-and-crlf": ("error", "a UTF-8 BOM, CRLF lines and a binary with no src",
                     b"\xef\xbb\xbfname = \"x\"\r\n[[binary]]\r\ndest = \"/x\"\r\n"),
    "many-missing-binaries": ("error", "2000 binaries that do not exist: one error for the first",
                              b"name = \"x\"\n" + b"".join(
                                  b"[[binary]]\nsrc = \"/nonexistent/%d\"\n" % i for i in range(2000))),
    "dest-dot": ("error", "a dest of '.', which would replace the root (umoci CVE-2021-29136)",
                                         b"name = \"x\"\n[[dir]]\ndest = \"/.\"\n"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = ["# name: expect (ok | error) -- what is broken. Written by scripts/gen-regressions.py."]
    for name, (expect, why, f) in CASES.items():
        b, at = build()
        f(b, at)
        with open(os.path.join(OUT, name + ".elf"), "wb") as fh:
            fh.write(bytes(b))
        lines.append("%s: %s -- %s" % (name, expect, why))
    with open(os.path.join(OUT, "EXPECT"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    rdir = os.path.join(HERE, "recipe")
    os.makedirs(rdir, exist_ok=True)
    lines = lines[:1]
    for name, (expect, why, data) in RECIPES.items():
        with open(os.path.join(rdir, name + ".toml"), "wb") as fh:
            fh.write(data)
        lines.append("%s: %s -- %s" % (name, expect, why))
    with open(os.path.join(rdir, "EXPECT"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote %d ELF cases and %d recipes under %s" % (len(CASES), len(RECIPES), os.path.normpath(HERE)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
