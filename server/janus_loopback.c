/* LD_PRELOAD shim for Janus on a loopback-only host (tests, `make run` on 127.0.0.1).
 *
 * Janus 1.1.2 skips every interface flagged IFF_LOOPBACK when it gathers ICE host
 * candidates (and libnice's fallback skips loopback too), so no setting makes it offer
 * 127.0.0.1. This getifaddrs() calls the real one and clears IFF_LOOPBACK on each entry;
 * with nat.ice_enforce_list = "127.0.0.1" Janus then offers 127.0.0.1 host candidates only.
 * Built on demand by server/janus_supervisor.py; never used when Janus serves real interfaces.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = NULL;
    if (real == NULL) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (real == NULL) return -1;
    int rc = real(ifap);
    if (rc == 0 && ifap != NULL) {
        for (struct ifaddrs *it = *ifap; it != NULL; it = it->ifa_next) it->ifa_flags &= ~IFF_LOOPBACK;
    }
    return rc;
}
