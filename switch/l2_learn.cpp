// l2_learn: record each source MAC on the ingress port.
#include "switch/forwarding.h"

namespace conduit::sw {

void l2_learn(PacketVector& v, uint64_t now_ms, BridgeCounters& counters) {
    MacTable& fdb = *v.bridge->fdb;
    // With many hosts every address is a cache miss: start all of them at once, the
    // destinations too (l2_fwd looks them up next).
    fdb.prefetch(v.src, v.count);
    fdb.prefetch(v.dst, v.count);
    Mac previous = 0;  // 0 is never a valid source (l2_input dropped those)
    for (uint16_t i = 0; i < v.count; ++i) {
        // Bursts are usually from few hosts; learn each run of equal sources once.
        if (v.src[i] == previous) {
            continue;
        }
        previous = v.src[i];
        switch (fdb.learn(v.src[i], v.ingress, now_ms)) {
            case MacTable::Learn::kUnchanged:
            case MacTable::Learn::kRefreshed:
                break;
            case MacTable::Learn::kLearned:
                counters.mac_learned.add(1);
                break;
            case MacTable::Learn::kMoved:
                counters.mac_moved.add(1);
                break;
            case MacTable::Learn::kTableFull:
                counters.mac_learn_table_full.add(1);
                break;
            case MacTable::Learn::kStatic:
                counters.mac_static_conflict.add(1);
                break;
        }
    }
}

}  // namespace conduit::sw
