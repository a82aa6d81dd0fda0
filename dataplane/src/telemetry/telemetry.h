// /meshwire/... commands on DPDK's telemetry socket (read with
// dpdk-telemetry.py or any client of /var/run/dpdk/<prefix>/dpdk_telemetry.v2).
// Callbacks run on DPDK's telemetry thread and only read: counters with
// relaxed loads (summed over workers); what reads the tables runs on the
// control thread (Node::tasks()).
#pragma once

namespace meshwire::dp {

class Node;

// Registers the commands; node must outlive the process's telemetry use
// (call unregister before destroying it: commands then answer with an error).
void telemetry_register(Node* node);
void telemetry_unregister();

}  // namespace meshwire::dp
