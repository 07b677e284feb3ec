// dataplane/rcu: quiescent-state based reclamation over DPDK's rte_rcu_qsbr.
//
// Workers report a quiescent state once per poll loop and go offline while they sleep.
// A control-path writer publishes new state, then calls synchronize(): when it returns,
// no worker can still be using what was replaced.
#pragma once

#include <cstdint>

struct rte_rcu_qsbr;

namespace conduit::dp {

class Rcu {
  public:
    explicit Rcu(unsigned max_readers);
    ~Rcu();
    Rcu(const Rcu&) = delete;
    Rcu& operator=(const Rcu&) = delete;

    // Reader side (each worker with its own id).
    void register_reader(unsigned id);
    void unregister_reader(unsigned id);
    void online(unsigned id);
    void offline(unsigned id);
    void quiescent(unsigned id);

    // Writer side: blocks until every online reader has passed a quiescent state.
    void synchronize();

  private:
    rte_rcu_qsbr* qsbr_;
};

}  // namespace conduit::dp
