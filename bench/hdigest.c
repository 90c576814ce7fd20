/* LD_PRELOAD shim for bench/run.sh's header-digest rows: makes a libiscsi
 * program offer HeaderDigest=CRC32C only.
 *
 * libiscsi's URL argument ?header_digest=crc32c would ask for it, but
 * iscsi-perf (libiscsi-bin 1.19) calls
 * iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C) after it
 * has parsed the URL, so the argument never reaches the login and the target
 * picks None. This wrapper turns every such call into
 * ISCSI_HEADER_DIGEST_CRC32C (3). Data digests cannot be asked for this way:
 * libiscsi 1.19 has no data digest at all (it always offers DataDigest=None).
 *
 *   gcc -O2 -shared -fPIC -o hdigest.so hdigest.c -ldl
 *   LD_PRELOAD=./hdigest.so iscsi-perf ... iscsi://...
 *
 * run.sh checks the login reply (LIBISCSI_DEBUG=6) on every digest run.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

struct iscsi_context;

int iscsi_set_header_digest(struct iscsi_context *iscsi, int header_digest)
{
    static int (*real)(struct iscsi_context *, int);

    (void)header_digest;
    if (!real)
        real = (int (*)(struct iscsi_context *, int))dlsym(RTLD_NEXT, "iscsi_set_header_digest");
    if (!real)
        return -1;
    return real(iscsi, 3 /* ISCSI_HEADER_DIGEST_CRC32C */);
}
