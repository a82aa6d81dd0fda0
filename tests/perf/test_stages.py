"""Reading dp_micro_bench's Google Benchmark JSON into the stage table."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import stages  # noqa: E402


def bench(name, **fields):
    return {"name": name, "run_type": "iteration", **fields}


def test_medians_and_counters_are_read():
    doc = {"benchmarks": [
        bench("BM_RawGcm/64", items_per_second=20e6),
        {"name": "BM_RawGcm/64_median", "run_type": "aggregate", "aggregate_name": "median",
         "items_per_second": 21e6},
        bench("BM_EncryptStage/64", items_per_second=8e6),
        bench("BM_EncryptDecrypt/64", items_per_second=3e6, enc_cyc_pkt=500.0, dec_cyc_pkt=700.0),
        bench("BM_RawGcm/1400", items_per_second=7e6),
        bench("BM_EncryptStage/1400", error_occurred=True, error_message="packets were dropped"),
    ]}
    got = stages.parse(json.dumps(doc))
    assert got["64"] == {"raw_gcm_pps": 21e6, "encrypt_pps": 8e6, "enc_cyc_pkt": 500.0, "dec_cyc_pkt": 700.0}
    assert got["1400"] == {"raw_gcm_pps": 7e6}   # the failed run is not a measurement


def test_the_filter_names_what_parse_reads():
    cmd = stages.command(Path("/x/dp_micro_bench"), 3, 0.3)
    assert "--benchmark_format=json" in cmd and "--benchmark_repetitions=3" in cmd
    assert any("RawGcm" in a and "EncryptStage" in a and "EncryptDecrypt" in a for a in cmd)


CALLGRIND = """# callgrind format
events: Ir
fn=(1) main
0 10
cfn=(2) meshwire::dp::process_local_burst(meshwire::dp::WorkerContext&, unsigned short)
calls=2 0
0 6400
cfn=(3) meshwire::dp::process_uplink_burst(meshwire::dp::WorkerContext&)
calls=1 0
0 4000
cfn=(3)
calls=1 0
0 4000
fn=(2)
0 100
cfn=(6) meshwire::dp::process_local_burst(meshwire::dp::WorkerContext&, unsigned short)::{lambda(unsigned short)#1}::operator()(unsigned short) const
calls=32 0
0 640
cfn=(4) meshwire::dp::esp::gcm_encrypt_burst(meshwire::dp::esp::GcmEngine&, unsigned short)
calls=2 0
0 3200
fn=(3)
cfn=(5) meshwire::dp::esp::gcm_decrypt_burst(meshwire::dp::esp::GcmEngine&, unsigned short)
calls=2 0
0 3840
"""


def test_callgrind_inclusive_cost_per_packet():
    # 64 packets in all: every call edge's inclusive cost is summed, names
    # given once and referred to by number afterwards; a lambda moved out of
    # a profiled function is inside its inclusive cost, not counted again.
    got = stages.parse_callgrind(CALLGRIND, packets=64)
    assert got == {"local_instr_pkt": 100.0, "uplink_instr_pkt": 125.0,
                   "gcm_enc_instr_pkt": 50.0, "gcm_dec_instr_pkt": 60.0}
