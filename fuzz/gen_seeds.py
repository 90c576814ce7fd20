#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

The input formats are documented on the entry points:
crates/rtgt-iscsi/src/fuzz_entry.rs (pdu, login, ffp, chap) and
crates/rtgt-scsi/src/fuzz_entry.rs (cdb, param_list). Run from anywhere:
    python3 fuzz/gen_seeds.py
It only (re)writes the files it names; seeds added by hand (e.g. crash
reproducers named crash-*) are kept.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

TARGET = "iqn.2026-11.org.rtgt:fuzz"
LIBISCSI = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
OPENISCSI = "iqn.1994-05.com.redhat:8d2c4f5a6b7e"
ISID = bytes([0x80, 0x00, 0x23, 0xD0, 0x00, 0x01])
RESERVED = 0xFFFFFFFF
BLOCK = 512


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def text(*pairs):
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def bhs(opcode, flags=0, data_len=0, ahs_len=0, lun=b"\0" * 8, itt=0,
        f20=0, f24=0, f28=0, f32=0, f36=0, f40=0, f44=0, extra=None):
    b = bytearray(48)
    b[0] = opcode
    b[1] = flags
    b[4] = ahs_len // 4
    b[5:8] = data_len.to_bytes(3, "big")
    b[8:16] = lun
    struct.pack_into(">IIIIIIII", b, 16, itt, f20, f24, f28, f32, f36, f40, f44)
    if extra:
        for off, val in extra.items():
            b[off:off + len(val)] = val
    return bytes(b)


def frame(header, data=b"", ahs=b"", hd=False, dd=False):
    """One PDU on the wire, digests as asked."""
    out = header + ahs
    if hd:
        out += struct.pack("<I", crc32c(header + ahs))
    if data:
        padded = data + b"\0" * (-len(data) % 4)
        out += padded
        if dd:
            out += struct.pack("<I", crc32c(padded))
    return out


# ---- iSCSI PDUs -----------------------------------------------------------

def login_pdu(flags, data, itt=1, cmdsn=1, tsih=0):
    h = bhs(0x43, flags, len(data), itt=itt, f24=cmdsn,
            extra={8: ISID, 14: tsih.to_bytes(2, "big")})
    return h, data


def scsi_cmd(cdb, itt, cmdsn, edtl=0, read=False, write=False, data=b"",
             attr=1, immediate=False, final=True):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | attr
    cdb16 = cdb[:16] + b"\0" * (16 - min(len(cdb), 16))
    h = bhs(0x01 | (0x40 if immediate else 0), flags, len(data), itt=itt,
            f20=edtl, f24=cmdsn, f28=1, extra={32: cdb16})
    return h, data


def data_out(itt, data, ttt=RESERVED, datasn=0, offset=0, final=True):
    h = bhs(0x05, 0x80 if final else 0, len(data), itt=itt, f20=ttt, f28=1,
            f36=datasn, f40=offset)
    return h, data


def nop_out(itt, cmdsn, data=b"", immediate=True, ttt=RESERVED):
    h = bhs(0x00 | (0x40 if immediate else 0), 0x80, len(data), itt=itt,
            f20=ttt, f24=cmdsn, f28=1)
    return h, data


def tmf(function, itt, cmdsn, ref_itt=RESERVED, ref_cmdsn=0):
    h = bhs(0x42, 0x80 | function, 0, itt=itt, f20=ref_itt, f24=cmdsn,
            f28=1, f32=ref_cmdsn)
    return h, b""


def text_req(data, itt, cmdsn, ttt=RESERVED, final=True, cont=False):
    flags = (0x80 if final else 0) | (0x40 if cont else 0)
    h = bhs(0x04, flags, len(data), itt=itt, f20=ttt, f24=cmdsn, f28=1)
    return h, data


def logout(itt, cmdsn, reason=0):
    h = bhs(0x46, 0x80 | reason, 0, itt=itt, f24=cmdsn, f28=1)
    return h, b""


def stream(pdus, hd=False, dd=False):
    return b"".join(frame(h, d, hd=hd, dd=dd) for h, d in pdus)


def be(n, width):
    return n.to_bytes(width, "big")


def cdb10(op, lba=0, n=1, b1=0):
    return bytes([op, b1]) + be(lba, 4) + b"\0" + be(n, 2) + b"\0"


def cdb16(op, lba=0, n=1, b1=0):
    return bytes([op, b1]) + be(lba, 8) + be(n, 4) + b"\0\0"


LOGIN_SEC = text(("InitiatorName", LIBISCSI),
                 ("InitiatorAlias", "iscsi-test"),
                 ("TargetName", TARGET),
                 ("SessionType", "Normal"),
                 ("AuthMethod", "None"))
LOGIN_OP = text(("HeaderDigest", "None,CRC32C"),
                ("DataDigest", "None,CRC32C"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
                ("IFMarker", "No"),
                ("OFMarker", "No"),
                ("ErrorRecoveryLevel", "0"),
                ("InitialR2T", "No"),
                ("ImmediateData", "Yes"),
                ("MaxBurstLength", "16776192"),
                ("FirstBurstLength", "262144"),
                ("MaxOutstandingR2T", "1"),
                ("MaxConnections", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
                ("MaxRecvDataSegmentLength", "262144"))
OPEN_ISCSI_SEC = text(("InitiatorName", OPENISCSI),
                      ("InitiatorAlias", "host1"),
                      ("TargetName", TARGET),
                      ("SessionType", "Normal"),
                      ("AuthMethod", "CHAP,None"))
OPEN_ISCSI_OP = text(("HeaderDigest", "None"),
                     ("DataDigest", "None"),
                     ("MaxRecvDataSegmentLength", "262144"),
                     ("ErrorRecoveryLevel", "0"),
                     ("InitialR2T", "No"),
                     ("ImmediateData", "Yes"),
                     ("MaxBurstLength", "16776192"),
                     ("FirstBurstLength", "262144"),
                     ("DefaultTime2Wait", "2"),
                     ("DefaultTime2Retain", "0"),
                     ("MaxOutstandingR2T", "1"),
                     ("DataPDUInOrder", "Yes"),
                     ("DataSequenceInOrder", "Yes"),
                     ("MaxConnections", "1"),
                     ("iSCSIProtocolLevel", "1"))
DISCOVERY = text(("InitiatorName", LIBISCSI), ("SessionType", "Discovery"),
                 ("AuthMethod", "None"))


def ffp_session(ctl, hd=False, dd=False):
    """A libiscsi-like session after login: TUR (unit attention), INQUIRY,
    READ CAPACITY, WRITE with immediate data, READ, NOP, SendTargets,
    TMF, Logout."""
    w = bytes(range(256)) * 2
    pdus = [
        scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), 1, 1),
        scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), 2, 2),
        scsi_cmd(bytes([0x12, 0, 0, 0, 96, 0]), 3, 3, edtl=96, read=True),
        scsi_cmd(bytes([0x12, 1, 0x83, 0, 255, 0]), 4, 4, edtl=255, read=True),
        scsi_cmd(bytes([0x9E, 0x10]) + b"\0" * 8 + be(32, 4) + b"\0\0", 5, 5, edtl=32, read=True),
        scsi_cmd(bytes([0xA0, 0, 0, 0, 0, 0]) + be(16, 4) + b"\0\0", 6, 6, edtl=16, read=True),
    ]
    if ctl & 0x04:
        pdus.append(scsi_cmd(cdb10(0x2A, 8, 1), 7, 7, edtl=512, write=True, data=w))
    else:
        pdus.append(scsi_cmd(cdb10(0x2A, 8, 1), 7, 7, edtl=512, write=True))
        if ctl & 0x08:
            pdus.append(data_out(7, w, ttt=1))
        else:
            pdus.append(data_out(7, w))
    pdus += [
        scsi_cmd(cdb10(0x28, 8, 1), 8, 8, edtl=512, read=True),
        nop_out(9, 9, data=b"ping"),
        text_req(text(("SendTargets", "")), 10, 9),
        scsi_cmd(cdb10(0x35, 0, 0), 11, 10),
        tmf(1, 12, 11, ref_itt=0x99, ref_cmdsn=11),
        logout(13, 12),
    ]
    return bytes([ctl]) + stream(pdus, hd, dd)


def ffp_seeds():
    s = {}
    s["session_immediate"] = ffp_session(0x04)
    s["session_unsolicited"] = ffp_session(0x00)
    s["session_initial_r2t"] = ffp_session(0x08)
    s["session_digests"] = ffp_session(0x07, hd=True, dd=True)
    s["session_small_limits"] = ffp_session(0x44)
    s["session_read_only"] = ffp_session(0x84)
    # A 16 KiB write solicited by R2Ts in 8 KiB bursts (small limits: one
    # R2T outstanding, FirstBurstLength 4096, MRDSL 8192).
    big = bytes((i * 7) & 0xFF for i in range(16384))
    pdus = [scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), 1, 1),
            scsi_cmd(cdb10(0x2A, 0, 32), 2, 2, edtl=16384, write=True, data=big[:4096])]
    # R2T 1 asks for 4096..12288 (MaxBurstLength), R2T 2 for the rest.
    pdus.append(data_out(2, big[4096:8192], ttt=1, datasn=0, offset=4096, final=False))
    pdus.append(data_out(2, big[8192:12288], ttt=1, datasn=1, offset=8192))
    pdus.append(data_out(2, big[12288:16384], ttt=2, datasn=0, offset=12288))
    pdus.append(scsi_cmd(cdb10(0x28, 0, 32), 3, 3, edtl=16384, read=True))
    pdus.append(logout(4, 4))
    s["write_r2t_bursts"] = bytes([0x44]) + stream(pdus)
    # Unsolicited Data-Out that breaks the rules, then a TMF abort of a
    # parked write, an ORDERED command behind it, LUN reset.
    pdus = [scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), 1, 1),
            scsi_cmd(cdb10(0x2A, 0, 4), 2, 2, edtl=2048, write=True),
            scsi_cmd(cdb10(0x28, 0, 4), 3, 3, edtl=2048, read=True, attr=2),
            data_out(2, b"\xaa" * 512, datasn=5, offset=0),
            scsi_cmd(cdb10(0x2A, 4, 4), 4, 4, edtl=2048, write=True),
            tmf(1, 5, 5, ref_itt=4, ref_cmdsn=4),
            scsi_cmd(cdb10(0x2A, 8, 4), 6, 6, edtl=2048, write=True),
            tmf(5, 7, 7),
            scsi_cmd(cdb10(0x2A, 8, 4), 8, 8, edtl=2048, write=True),
            tmf(6, 9, 9)]
    s["tmf_aborts"] = bytes([0x04]) + stream(pdus)
    # Window of 4: more commands than fit, CmdSN gaps.
    pdus = [scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), i + 1, i + 1) for i in range(8)]
    pdus.append(scsi_cmd(bytes([0, 0, 0, 0, 0, 0]), 20, 40))
    pdus.append(nop_out(21, 9, immediate=False))
    s["window_small"] = bytes([0x24]) + stream(pdus)
    # Discovery session: SendTargets=All spanning PDUs, NOP, logout.
    pdus = [text_req(text(("SendTargets", "All")), 1, 1),
            text_req(b"SendTarg", 2, 2, final=False, cont=True),
            text_req(b"ets=All\0", 2, 3, ttt=1),
            nop_out(3, 4, data=b"x" * 10),
            scsi_cmd(bytes([0x12, 0, 0, 0, 36, 0]), 4, 4, edtl=36, read=True),
            logout(5, 4)]
    s["discovery"] = bytes([0x10]) + stream(pdus)
    # Text in a normal session: MaxRecvDataSegmentLength change, unknown keys.
    pdus = [text_req(text(("MaxRecvDataSegmentLength", "4096"), ("X-com.example", "1"),
                          ("HeaderDigest", "CRC32C")), 1, 1),
            scsi_cmd(cdb10(0x28, 0, 64), 2, 2, edtl=32768, read=True),
            logout(3, 3)]
    s["text_mrdsl"] = bytes([0x04]) + stream(pdus)
    # Extended CDB (AHS type 1) and a bidirectional XDWRITEREAD-like CDB.
    ahs = be(17, 2) + b"\x01\x00" + b"\0" * 16
    h = bhs(0x01, 0xE1, 0, ahs_len=len(ahs), itt=1, f20=512, f24=1, f28=1,
            extra={32: bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18])})
    s["ahs_cdb"] = bytes([0x04]) + frame(h, ahs=ahs) + stream([logout(2, 2)])
    # Immediate commands, SNACK, a login PDU, unknown opcodes.
    pdus = [scsi_cmd(bytes([0x12, 0, 0, 0, 36, 0]), 1, 1, edtl=36, read=True, immediate=True),
            (bhs(0x10, 0x80, 0, itt=2, f24=1), b""),
            (bhs(0x1C, 0x80, 0, itt=3, f24=1), b""),
            login_pdu(0x87, LOGIN_OP)]
    s["odd_opcodes"] = bytes([0x04]) + stream(pdus)
    return s


def login_rec(flags, txt, misc=0):
    return bytes([flags, misc]) + be(len(txt), 2) + txt


def login_seeds():
    s = {}
    s["libiscsi_none"] = bytes([0]) + login_rec(0x81, LOGIN_SEC) + login_rec(0x87, LOGIN_OP) + login_rec(0x87, b"")
    s["libiscsi_skip_op"] = bytes([0]) + login_rec(0x83, LOGIN_SEC + LOGIN_OP)
    s["op_stage_first"] = bytes([0]) + login_rec(0x87, LOGIN_SEC + LOGIN_OP)
    s["open_iscsi_none"] = bytes([0x08]) + login_rec(0x81, OPEN_ISCSI_SEC) + login_rec(0x87, OPEN_ISCSI_OP)
    s["digests_required"] = bytes([0x40]) + login_rec(0x81, LOGIN_SEC) + login_rec(0x87, LOGIN_OP) + login_rec(0x87, b"")
    s["no_immediate"] = bytes([0x30]) + login_rec(0x81, LOGIN_SEC) + login_rec(0x87, LOGIN_OP) + login_rec(0x87, b"")
    chap = text(("InitiatorName", OPENISCSI), ("TargetName", TARGET),
                ("SessionType", "Normal"), ("AuthMethod", "CHAP,None"))
    for name, ctl, alg, misc in [("chap_md5", 0x81, "5", 1), ("chap_sha256", 0x01, "7", 1),
                                 ("chap_sha3", 0x01, "8,7,6,5", 1), ("chap_mutual", 0x03, "7", 3),
                                 ("chap_wrong", 0x01, "5", 0)]:
        recs = login_rec(0x00, chap) + login_rec(0x00, text(("CHAP_A", alg)))
        if misc:
            recs += login_rec(0x81, b"", misc)
        else:
            recs += login_rec(0x81, text(("CHAP_N", "fuzzuser"), ("CHAP_R", "0x" + "00" * 16)))
        recs += login_rec(0x87, OPEN_ISCSI_OP) + login_rec(0x87, b"")
        s[name] = bytes([ctl]) + recs
    disc = text(("InitiatorName", OPENISCSI), ("SessionType", "Discovery"),
                ("AuthMethod", "CHAP"))
    s["discovery_none"] = bytes([0]) + login_rec(0x81, DISCOVERY) + login_rec(0x87, text(
        ("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "32768")))
    s["discovery_chap"] = bytes([0x04]) + login_rec(0x00, disc) + login_rec(0x00, text(("CHAP_A", "5"))) \
        + login_rec(0x83, b"", 1)
    s["cont_bit"] = bytes([0]) + login_rec(0x41, LOGIN_SEC[:40]) + login_rec(0x81, LOGIN_SEC[40:]) \
        + login_rec(0x87, LOGIN_OP)
    s["moved"] = bytes([0]) + login_rec(0x81, text(("InitiatorName", LIBISCSI),
                                                   ("TargetName", "iqn.2026-11.org.rtgt:moved")))
    s["not_found"] = bytes([0]) + login_rec(0x81, text(("InitiatorName", LIBISCSI),
                                                       ("TargetName", "iqn.2026-11.org.rtgt:nope")))
    s["tsih_join"] = bytes([0]) + login_rec(0x81, LOGIN_SEC, 0x04)
    s["bad_version"] = bytes([0]) + login_rec(0x81, LOGIN_SEC, 0x08)
    s["isid_change"] = bytes([0]) + login_rec(0x81, LOGIN_SEC) + login_rec(0x87, LOGIN_OP, 0x10)
    s["key_repeated"] = bytes([0]) + login_rec(0x81, LOGIN_SEC) + login_rec(0x87, LOGIN_OP + LOGIN_OP)
    s["odd_values"] = bytes([0]) + login_rec(0x83, LOGIN_SEC + text(
        ("MaxBurstLength", "0x200"), ("FirstBurstLength", "0x1000000"), ("MaxRecvDataSegmentLength", "512"),
        ("X-vendor.key", "NotUnderstood"), ("TaskReporting", "RFC3720"), ("IFMarkInt", "1~65535"),
        ("RDMAExtensions", "Yes"), ("DefaultTime2Wait", "3600"), ("ErrorRecoveryLevel", "2"),
        ("HeaderDigest", "CRC32C,None,Bogus"), ("MaxConnections", "65535")))
    return s


def pdu_seeds():
    s = {}
    s["login_sec"] = bytes([0]) + stream([login_pdu(0x81, LOGIN_SEC)])
    s["login_op"] = bytes([0]) + stream([login_pdu(0x87, LOGIN_OP, itt=2)])
    s["login_chap"] = bytes([0]) + stream([login_pdu(0x00, text(("CHAP_A", "7,5")))])
    s["discovery_text"] = bytes([4]) + stream([text_req(text(("SendTargets", "All")), 1, 1)])
    s["ffp_nodigest"] = ffp_session(0x04)[1:]
    s["ffp_nodigest"] = bytes([4]) + s["ffp_nodigest"]
    s["ffp_header_digest"] = bytes([5]) + ffp_session(0x04, hd=True)[1:]
    s["ffp_data_digest"] = bytes([6]) + ffp_session(0x04, dd=True)[1:]
    s["ffp_both_digests"] = bytes([7]) + ffp_session(0x04, hd=True, dd=True)[1:]
    bad = bytearray(frame(*nop_out(1, 1, data=b"abcde"), hd=True, dd=True))
    bad[-1] ^= 0xFF
    s["bad_data_digest"] = bytes([7]) + bytes(bad) + frame(*nop_out(2, 1), hd=True, dd=True)
    ahs = be(17, 2) + b"\x01\x00" + b"\0" * 16
    h = bhs(0x01, 0xC1, 4, ahs_len=len(ahs), itt=1, f20=4, f24=1)
    s["ahs"] = bytes([4]) + frame(h, b"abcd", ahs=ahs)
    s["too_long"] = bytes([0]) + bhs(0x03, 0x81, 9000)
    return s


# ---- SCSI -----------------------------------------------------------------

def cdb_seed(cdb, data=b"", pad=False, lun1=False, ro=False):
    ctl = (len(cdb) - 1) | (0x40 if pad else 0) | (0x20 if lun1 else 0) | (0x80 if ro else 0)
    return bytes([ctl]) + cdb + data


def mode_caching(wce=True):
    page = bytearray(20)
    page[0], page[1] = 0x08, 0x12
    page[2] = 0x04 if wce else 0
    return bytes(page)


def mode_control(d_sense=True):
    page = bytearray(12)
    page[0], page[1] = 0x0A, 0x0A
    page[2] = 0x04 if d_sense else 0
    return bytes(page)


def block_descriptor(blocks=2048, length=BLOCK):
    return b"\0" + be(blocks, 3) + b"\0" + be(length, 3)


def mode6(pages, bd=b""):
    return bytes([0, 0, 0, len(bd)]) + bd + pages


def mode10(pages, bd=b""):
    return b"\0\0\0\0\0\0" + be(len(bd), 2) + bd + pages


def unmap_list(ranges):
    descs = b"".join(be(lba, 8) + be(n, 4) + b"\0" * 4 for lba, n in ranges)
    return be(len(descs) + 6, 2) + be(len(descs), 2) + b"\0" * 4 + descs


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


LU_NAA = (0x5 << 60) | (0x1405 << 36) | (fnv1a("fuzz0") & 0xFFFFFFFFF)


def xcopy_list(segments, naa=LU_NAA, cscds=1):
    cscd = bytearray(32)
    cscd[0] = 0xE4
    cscd[4] = 0x01
    cscd[5] = 0x03
    cscd[7] = 8
    cscd[8:16] = be(naa, 8)
    cscd[29:32] = be(BLOCK, 3)
    cscd_list = bytes(cscd) * cscds
    seg_list = b""
    for src, dst, n, slba, dlba in segments:
        seg_list += bytes([0x02, 0]) + be(24, 2) + be(src, 2) + be(dst, 2) + b"\0\0" \
            + be(n, 2) + be(slba, 8) + be(dlba, 8)
    hdr = bytes([1, 0]) + be(len(cscd_list), 2) + b"\0" * 4 + be(len(seg_list), 4) + be(0, 4)
    return hdr + cscd_list + seg_list


def transport_id(name):
    s = name.encode() + b"\0"
    s += b"\0" * (-len(s) % 4)
    if len(s) < 20:
        s += b"\0" * (20 - len(s))
    return bytes([0x45, 0]) + be(len(s), 2) + s


def pr_params(key=0, sa_key=0, flags=0, extra=b""):
    return be(key, 8) + be(sa_key, 8) + b"\0\0\0\0" + bytes([flags, 0, 0, 0]) + extra


def cdb_seeds():
    s = {}
    w = bytes((i * 13) & 0xFF for i in range(BLOCK))
    z = lambda n: b"\0" * n  # noqa: E731
    s["tur"] = cdb_seed(z(6))
    s["request_sense"] = cdb_seed(bytes([0x03, 0, 0, 0, 252, 0]))
    s["request_sense_desc"] = cdb_seed(bytes([0x03, 1, 0, 0, 252, 0]))
    s["read6"] = cdb_seed(bytes([0x08, 0, 0, 8, 2, 0]))
    s["write6"] = cdb_seed(bytes([0x0A, 0, 0, 8, 1, 0]), w)
    s["inquiry"] = cdb_seed(bytes([0x12, 0, 0, 0, 96, 0]))
    for page in (0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2):
        s[f"inquiry_vpd_{page:02x}"] = cdb_seed(bytes([0x12, 1, page, 0, 255, 0]))
    s["mode_select6"] = cdb_seed(bytes([0x15, 0x10, 0, 0, 24, 0]), mode6(mode_caching(False)))
    s["mode_select6_bd"] = cdb_seed(bytes([0x15, 0x11, 0, 0, 24, 0]), mode6(mode_control(), block_descriptor()))
    s["reserve6"] = cdb_seed(bytes([0x16, 0, 0, 0, 0, 0]))
    s["release6"] = cdb_seed(bytes([0x17, 0, 0, 0, 0, 0]))
    s["mode_sense6_all"] = cdb_seed(bytes([0x1A, 0, 0x3F, 0, 255, 0]))
    s["mode_sense6_changeable"] = cdb_seed(bytes([0x1A, 0x08, 0x48, 0, 255, 0]))
    s["start_stop"] = cdb_seed(bytes([0x1B, 1, 0, 0, 0x01, 0]))
    s["start_stop_eject"] = cdb_seed(bytes([0x1B, 0, 0, 0, 0x02, 0]))
    s["prevent_allow"] = cdb_seed(bytes([0x1E, 0, 0, 0, 1, 0]))
    s["read_capacity10"] = cdb_seed(bytes([0x25]) + z(9))
    s["read10"] = cdb_seed(cdb10(0x28, 0, 8))
    s["read10_fua"] = cdb_seed(cdb10(0x28, 2040, 8, b1=0x08))
    s["write10"] = cdb_seed(cdb10(0x2A, 16, 1), w)
    s["write10_pad"] = cdb_seed(cdb10(0x2A, 0, 16), pad=True)
    s["write10_ro"] = cdb_seed(cdb10(0x2A, 16, 1), w, ro=True)
    s["write_verify10"] = cdb_seed(cdb10(0x2E, 16, 1, b1=0x02), w)
    s["verify10"] = cdb_seed(cdb10(0x2F, 0, 8))
    s["verify10_bytchk"] = cdb_seed(cdb10(0x2F, 0, 1, b1=0x02), z(BLOCK))
    s["prefetch10"] = cdb_seed(cdb10(0x34, 0, 8))
    s["sync10"] = cdb_seed(cdb10(0x35, 0, 0))
    s["read_defect10"] = cdb_seed(bytes([0x37, 0, 0x18, 0, 0, 0, 0, 0, 64, 0]))
    s["write_same10"] = cdb_seed(cdb10(0x41, 0, 16), w)
    s["write_same10_unmap"] = cdb_seed(cdb10(0x41, 0, 16, b1=0x08), z(BLOCK))
    s["unmap"] = cdb_seed(bytes([0x42, 0, 0, 0, 0, 0, 0]) + be(24, 2) + b"\0", unmap_list([(0, 8)]))
    s["sanitize_overwrite"] = cdb_seed(bytes([0x48, 0x01, 0, 0, 0, 0, 0]) + be(8, 2) + b"\0",
                                       bytes([0x01, 0]) + be(4, 2) + b"\xde\xad\xbe\xef")
    s["sanitize_overwrite_immed"] = cdb_seed(bytes([0x48, 0x81, 0, 0, 0, 0, 0]) + be(8, 2) + b"\0",
                                             bytes([0x81, 0]) + be(4, 2) + b"\x00\xff\x00\xff")
    s["sanitize_block_erase"] = cdb_seed(bytes([0x48, 0x02]) + z(8))
    s["sanitize_exit_failure"] = cdb_seed(bytes([0x48, 0x1F]) + z(8))
    s["mode_select10"] = cdb_seed(bytes([0x55, 0x10, 0, 0, 0, 0, 0]) + be(28, 2) + b"\0",
                                  mode10(mode_caching()))
    s["reserve10"] = cdb_seed(bytes([0x56]) + z(9))
    s["release10"] = cdb_seed(bytes([0x57]) + z(9))
    s["mode_sense10_all"] = cdb_seed(bytes([0x5A, 0, 0x3F, 0, 0, 0, 0]) + be(4096, 2) + b"\0")
    s["mode_sense10_llba"] = cdb_seed(bytes([0x5A, 0x10, 0x08, 0, 0, 0, 0]) + be(4096, 2) + b"\0")
    for sa in range(4):
        s[f"pr_in_{sa}"] = cdb_seed(bytes([0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0]))
    for sa in range(8):
        extra = b""
        if sa == 7:
            extra = transport_id("iqn.1994-05.com.redhat:fuzz-b,i,0x23d000000002")
            p = be(0, 8) + be(0x1111, 8) + b"\0\0" + be(1, 2) + be(len(extra), 4) + extra
        else:
            p = pr_params(0 if sa in (0, 6) else 0x1111, 0x1111 if sa in (0, 6) else 0)
        c = bytes([0x5F, sa, 0x01 if sa in (1, 2, 4, 5, 7) else 0, 0, 0]) + be(len(p), 4) + b"\0"
        s[f"pr_out_{sa}"] = cdb_seed(c, p)
    xc = xcopy_list([(0, 0, 8, 0, 64)])
    s["xcopy"] = cdb_seed(bytes([0x83, 0]) + z(8) + be(len(xc), 4) + b"\0\0", xc)
    s["receive_copy_status"] = cdb_seed(bytes([0x84, 0x00, 1]) + z(7) + be(64, 4) + b"\0\0")
    s["receive_copy_params"] = cdb_seed(bytes([0x84, 0x03]) + z(8) + be(64, 4) + b"\0\0")
    s["read16"] = cdb_seed(cdb16(0x88, 0, 8))
    s["compare_and_write"] = cdb_seed(bytes([0x89, 0]) + be(32, 8) + b"\0\0\0\x01\0\0", z(BLOCK) + w)
    s["write16"] = cdb_seed(cdb16(0x8A, 32, 1), w)
    s["orwrite16"] = cdb_seed(cdb16(0x8B, 32, 1), w)
    s["write_verify16"] = cdb_seed(cdb16(0x8E, 32, 1), w)
    s["verify16"] = cdb_seed(cdb16(0x8F, 0, 8))
    s["prefetch16"] = cdb_seed(cdb16(0x90, 0, 8))
    s["sync16"] = cdb_seed(cdb16(0x91, 0, 0))
    s["write_same16"] = cdb_seed(cdb16(0x93, 0, 64), w)
    s["write_same16_ndob"] = cdb_seed(cdb16(0x93, 0, 64, b1=0x09))
    s["write_atomic16"] = cdb_seed(bytes([0x9C, 0]) + be(48, 8) + b"\0\0" + be(1, 2) + b"\0\0", w)
    s["read_capacity16"] = cdb_seed(bytes([0x9E, 0x10]) + z(8) + be(32, 4) + b"\0\0")
    s["get_lba_status"] = cdb_seed(bytes([0x9E, 0x12]) + z(8) + be(4096, 4) + b"\0\0")
    s["report_luns"] = cdb_seed(bytes([0xA0, 0, 0, 0, 0, 0]) + be(4096, 4) + b"\0\0")
    s["report_luns_lun1"] = cdb_seed(bytes([0xA0, 0, 0, 0, 0, 0]) + be(4096, 4) + b"\0\0", lun1=True)
    s["inquiry_lun1"] = cdb_seed(bytes([0x12, 0, 0, 0, 96, 0]), lun1=True)
    s["report_opcodes_all"] = cdb_seed(bytes([0xA3, 0x0C, 0, 0, 0, 0]) + be(8192, 4) + b"\0\0")
    s["report_opcodes_one"] = cdb_seed(bytes([0xA3, 0x0C, 0x01, 0x28, 0, 0]) + be(512, 4) + b"\0\0")
    s["report_opcodes_sa"] = cdb_seed(bytes([0xA3, 0x0C, 0x82, 0x9E, 0, 0x10]) + be(512, 4) + b"\0\0")
    s["read12"] = cdb_seed(bytes([0xA8, 0]) + be(0, 4) + be(8, 4) + b"\0\0")
    s["write12"] = cdb_seed(bytes([0xAA, 0]) + be(40, 4) + be(1, 4) + b"\0\0", w)
    s["write_verify12"] = cdb_seed(bytes([0xAE, 0]) + be(40, 4) + be(1, 4) + b"\0\0", w)
    s["verify12"] = cdb_seed(bytes([0xAF, 0]) + be(0, 4) + be(8, 4) + b"\0\0")
    s["read_defect12"] = cdb_seed(bytes([0xB7, 0x18]) + z(4) + be(64, 4) + b"\0\0")
    s["cdb32_variable"] = cdb_seed(bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18, 0, 0x09]) + z(22))
    s["unknown_opcode"] = cdb_seed(bytes([0xC0]) + z(5))
    return s


def prec(sel, opt, arg, payload, more=False):
    if more:
        return bytes([sel | 0x20, opt, arg]) + be(len(payload), 2) + payload
    return bytes([sel, opt, arg]) + payload


KEY_A = 0x0A0A0A0A0A0A0A0A
KEY_B = 0x0B0B0B0B0B0B0B0B


def param_seeds():
    s = {}
    w = bytes((i * 5) & 0xFF for i in range(BLOCK))
    s["pr_register"] = prec(0, 0, 0, pr_params(0, 0x1234))
    s["pr_register_aptpl"] = prec(0, 0, 0, pr_params(0, 0x1234, flags=0x01))
    tids = transport_id("iqn.1994-05.com.redhat:fuzz-b,i,0x23d000000002")
    s["pr_register_spec_i_pt"] = prec(0, 0, 0, pr_params(0, 0x1234, flags=0x0C,
                                                            extra=be(len(tids), 4) + tids))
    s["pr_register_all_tg_pt"] = prec(0, 0, 0, pr_params(0, 0x1234, flags=0x04))
    s["pr_ignore_existing"] = prec(6, 0, 0, pr_params(0, 0x5678))
    for ty in (1, 3, 5, 6, 7, 8):
        s[f"pr_reserve_type{ty}"] = prec(0x80 | 1, ty, 0, pr_params(KEY_A))
    s["pr_reserve_release"] = prec(0x80 | 1, 1, 0, pr_params(KEY_A), True) + prec(2, 1, 0, pr_params(KEY_A))
    s["pr_reserve_conflict"] = prec(0x80 | 1, 3, 0, pr_params(KEY_A), True) \
        + prec(0x40 | 1, 3, 0, pr_params(KEY_B), True) + prec(0x40 | 8, 0x10, 0, mode6(mode_caching()))
    s["pr_preempt"] = prec(0x80 | 1, 1, 0, pr_params(KEY_A), True) + prec(0x40 | 4, 3, 0, pr_params(KEY_B, KEY_A))
    s["pr_preempt_abort"] = prec(0x80 | 1, 5, 0, pr_params(KEY_A), True) + prec(0x40 | 5, 5, 0, pr_params(KEY_B, KEY_A))
    s["pr_clear"] = prec(0x80 | 1, 1, 0, pr_params(KEY_A), True) + prec(0x40 | 3, 0, 0, pr_params(KEY_B))
    s["pr_unregister"] = prec(0x80 | 0, 0, 0, pr_params(KEY_A, 0))
    mv = be(KEY_A, 8) + be(0x7777, 8) + b"\0\0" + be(1, 2) + be(len(tids), 4) + tids
    s["pr_register_and_move"] = prec(0x80 | 1, 1, 0, pr_params(KEY_A), True) + prec(7, 1, 0, mv)
    s["mode_select6_caching"] = prec(8, 0, 0, mode6(mode_caching(False)))
    s["mode_select6_control_bd"] = prec(8, 0, 0, mode6(mode_control(), block_descriptor()))
    s["mode_select6_save"] = prec(8, 1, 0, mode6(mode_caching()))
    s["mode_select10_caching"] = prec(9, 0, 0, mode10(mode_caching(False)))
    s["mode_select10_two_pages"] = prec(9, 0, 0, mode10(mode_caching() + mode_control(), block_descriptor()))
    s["unmap_one"] = prec(10, 0, 0, unmap_list([(0, 8)]))
    s["unmap_many"] = prec(10, 0, 0, unmap_list([(0, 8), (100, 50), (2040, 8), (5000, 1)]))
    s["unmap_anchor"] = prec(10, 1, 0, unmap_list([(16, 16)]))
    s["write_then_unmap"] = prec(16, 0, 0, w, True) + prec(10, 0, 0, unmap_list([(0, 1)]))
    s["xcopy_same_lu"] = prec(11, 0, 0, xcopy_list([(0, 0, 8, 0, 64)]))
    s["xcopy_two_segments"] = prec(11, 0, 0, xcopy_list([(0, 0, 8, 0, 64), (0, 1, 4, 8, 128)], cscds=2))
    s["xcopy_bad_naa"] = prec(11, 0, 0, xcopy_list([(0, 0, 8, 0, 64)], naa=0x6001405000000001))
    s["write_same10"] = prec(12, 0x30, 2, w)
    s["write_same10_unmap"] = prec(12, 0x38, 2, b"\0" * BLOCK)
    s["write_same16"] = prec(13, 0xF0, 4, w)
    s["write_same16_ndob"] = prec(13, 0x09, 4, b"")
    s["compare_and_write"] = prec(14, 0, 1, b"\0" * BLOCK + w)
    s["compare_and_write_miscompare"] = prec(16, 0, 1, w, True) + prec(14, 0x08, 1, b"\x01" * BLOCK + w)
    s["write_atomic16"] = prec(15, 0, 3, w)
    s["write_atomic16_fua"] = prec(15, 0x08, 3, w * 2)
    s["orwrite16"] = prec(16, 0, 5, w)
    return s


def chap_round(flags, extra=0, txt=b""):
    """A round of the chap target: flags (bits 0-1 connection, 0x04 right
    CHAP_R, 0x08 CHAP_N, 0x10 fresh mutual challenge, 0x20 reflect, 0x40
    copy CHAP_R, 0x80 drop), extra (bits 0-1 wrong response, 2-3 encoding,
    0x10 short challenge, 0x20 reconnect, 6-7 source offset), text."""
    return bytes([flags, extra]) + be(len(txt), 2) + txt


def chap_seeds():
    s = {}
    a = lambda v: text(("CHAP_A", v))
    r = chap_round
    # Control bytes: connections / secrets, algorithms, min_peer_challenge,
    # record capacity - 1.
    s["one_way_md5"] = bytes([0x00, 0x0F, 16, 3]) + r(0, 0, a("5")) + r(0x0C)
    s["one_way_sha3_base64"] = bytes([0x00, 0x0F, 16, 3]) + r(0, 0, a("8,7")) + r(0x0C, 0x08)
    s["mutual_sha256"] = bytes([0x01, 0x0F, 16, 3]) + r(0, 0, a("7")) + r(0x1C, 0x04)
    # min_peer_challenge 1024: one byte short fails, 1024 bytes succeed.
    s["mutual_max_challenge"] = bytes([0x01, 0x0F, 0xC0 + 34, 3]) + r(0, 0, a("8")) \
        + r(0x9C, 0x10) + r(0, 0x20, a("8")) + r(0x1C, 0x0C)
    # The target's own challenge sent back as CHAP_C.
    s["reflect_own"] = bytes([0x01, 0x0F, 16, 3]) + r(0, 0, a("5")) + r(0x2C)
    # A and B mutual, one secret for both directions, B its own initiator
    # credentials: B is asked to answer A's challenge (which would be A's
    # response), then A is sent what B output.
    s["reflect_cross"] = bytes([0x4F, 0x0F, 16, 3]) + r(0, 0, a("5")) + r(1, 0, a("5")) \
        + r(0x2D, 0x40) + r(0x48, 0x40)
    # Capacity 1: B is refused (03/02) and dropped; once A is done, B
    # reconnects and succeeds.
    s["full_record"] = bytes([0x02, 0x0F, 16, 0]) + r(0, 0, a("5")) + r(0x81, 0, a("5")) \
        + r(0x0C) + r(1, 0x20, a("5")) + r(0x0D)
    # Wrong CHAP_I, the mutual secret, a flipped byte, the right response
    # for another user name; then the right one.
    s["wrong_responses"] = bytes([0x00, 0x0F, 16, 3]) + r(0, 0, a("6")) + r(0x8C, 0x01) \
        + r(0, 0x20, a("6")) + r(0x8C, 0x02) + r(0, 0x20, a("6")) + r(0x8C, 0x03) \
        + r(0, 0x20, a("6")) + r(0x84, 0, text(("CHAP_N", "FuzzUser"))) \
        + r(0, 0x20, a("6")) + r(0x0C)
    # Three fillers and A fill a record of 4, B is refused; A reflects a
    # filler's challenge, reconnects and succeeds.
    s["fillers"] = bytes([0x33, 0x0F, 16, 3]) + r(0, 0, a("5")) + r(1, 0, a("5")) \
        + r(0xBC, 0x80) + r(0, 0x20, a("5")) + r(0x1C)
    # MD5 only: repeated and unknown CHAP_A values, a hex code, an unknown
    # key, mutual keys to a one-way target.
    s["protocol_junk"] = bytes([0x00, 0x01, 0, 3]) + r(0x80, 0, a("5") + a("5")) \
        + r(0x80, 0x20, a("7,6")) + r(0, 0x20, a("99,abc,0x5")) \
        + r(0x8C, 0, text(("CHAP_X", "1"))) + r(0, 0x20, b"\x01=5\0") + r(0x1C)
    return s


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("pdu", pdu_seeds())
    write("login", login_seeds())
    write("ffp", ffp_seeds())
    write("cdb", cdb_seeds())
    write("param_list", param_seeds())
    write("chap", chap_seeds())
    total = 0
    for root, _, files in os.walk(CORPUS):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"corpus: {total} bytes")


if __name__ == "__main__":
    main()
