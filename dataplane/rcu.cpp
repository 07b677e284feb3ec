#include "dataplane/rcu.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <stdexcept>

namespace conduit::dp {

Rcu::Rcu(unsigned max_readers) {
    const size_t size = rte_rcu_qsbr_get_memsize(max_readers);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("conduit_rcu", size, RTE_CACHE_LINE_SIZE));
    if (qsbr_ == nullptr || rte_rcu_qsbr_init(qsbr_, max_readers) != 0) {
        rte_free(qsbr_);
        throw std::runtime_error("cannot allocate the RCU state");
    }
}

Rcu::~Rcu() {
    rte_free(qsbr_);
}

void Rcu::register_reader(unsigned id) {
    rte_rcu_qsbr_thread_register(qsbr_, id);
    rte_rcu_qsbr_thread_online(qsbr_, id);
}

void Rcu::unregister_reader(unsigned id) {
    rte_rcu_qsbr_thread_offline(qsbr_, id);
    rte_rcu_qsbr_thread_unregister(qsbr_, id);
}

void Rcu::online(unsigned id) {
    rte_rcu_qsbr_thread_online(qsbr_, id);
}
void Rcu::offline(unsigned id) {
    rte_rcu_qsbr_thread_offline(qsbr_, id);
}
void Rcu::quiescent(unsigned id) {
    rte_rcu_qsbr_quiescent(qsbr_, id);
}

void Rcu::synchronize() {
    rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
}

}  // namespace conduit::dp
