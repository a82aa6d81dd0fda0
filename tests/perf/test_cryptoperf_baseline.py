"""perf/meshwire_perf/baselines/cryptoperf.py: the dpdk-test-crypto-perf
command line, the parser on captured output, and a real short run.

Run: /usr/bin/python3 -m pytest -q tests/perf/test_cryptoperf_baseline.py
"""

import glob
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "perf"))

from meshwire_perf.baselines import cryptoperf  # noqa: E402

# stdout of a real run (DPDK 22.11.11, ipsec-mb 1.3, a shared 2-vCPU VM):
# --ptest throughput --devtype crypto_aesni_mb --optype aead --aead-algo aes-gcm
# --aead-op encrypt --aead-key-sz 16 --aead-iv-sz 12 --aead-aad-sz 12 --digest-sz 16
# --buffer-sz 64,128,256,512,1024,1400 --burst-sz 32 --total-ops 2000000 --silent --csv-friendly
SAMPLE_CSV = """\
Allocated pool "sess_mp_0" on socket 0
#lcore id,Buffer Size(B),Burst Size,Enqueued,Dequeued,Failed Enq,Failed Deq,Ops(Millions),Throughput(Gbps),Cycles/Buf

1,64,32,2000000,2000000,0,0,9.106,4.662,306.398
1,128,32,2000000,2000000,0,0,9.320,9.544,299.354
1,256,32,2000000,2000000,0,0,7.954,16.290,350.765
1,512,32,2000000,2000000,0,0,6.815,27.915,409.374
1,1024,32,2000000,2000000,0,0,5.417,44.376,515.048
1,1400,32,2000000,2000000,0,0,4.739,53.072,588.780

"""

# The same without --csv-friendly (stdout and stderr together, as on a terminal).
SAMPLE_TABLE = """\
EAL: Detected CPU lcores: 2
CRYPTODEV: Creating cryptodev crypto_aesni_mb
ipsec_mb_create() line 168: IPSec Multi-buffer library version used: 1.3.0

Allocated pool "sess_mp_0" on socket 0
    lcore id    Buf Size  Burst Size    Enqueued    Dequeued  Failed Enq  Failed Deq        MOps        Gbps  Cycles/Buf

           1          64          32     2000000     2000000           0           0     10.4726      5.3620      266.41
           1         128          32     2000000     2000000           0           0     10.0660     10.3076      277.17
           1         256          32     2000000     2000000           0           0      8.5394     17.4887      326.72
           1         512          32     2000000     2000000           0           0      6.7485     27.6418      413.43
           1        1024          32     2000000     2000000           0           0      5.2443     42.9616      532.00
           1        1400          32     2000000     2000000           0           0      4.2764     47.8958      652.42
"""

SIZES = [64, 128, 256, 512, 1024, 1400]


def _require_tool():
    if shutil.which(cryptoperf.TOOL) is None:
        pytest.fail(f"{cryptoperf.TOOL} is not installed (scripts/bootstrap.sh installs Debian's dpdk)")


def test_parse_csv_sample():
    got = cryptoperf.parse(SAMPLE_CSV)
    assert sorted(got) == SIZES
    r = got[64]
    assert (r.size, r.mops, r.gbps, r.cycles_per_op, r.runs) == (64, 9.106, 4.662, 306.398, [9.106])
    assert got[1400].mops == 4.739 and got[1400].gbps == 53.072 and got[1400].cycles_per_op == 588.780
    for s, r in got.items():   # the tool's Gbps is Mops x buffer bits: the tag and AAD are not counted
        assert r.gbps == pytest.approx(r.mops * s * 8 / 1000, rel=2e-3)


def test_parse_table_sample():
    got = cryptoperf.parse(SAMPLE_TABLE)
    assert sorted(got) == SIZES
    assert got[64].mops == 10.4726 and got[1400].cycles_per_op == 652.42 and got[512].gbps == 27.6418


def test_parse_sums_lcores_and_ignores_noise():
    two = ("2,64,32,1000,1000,0,0,3.000,1.536,300.000\n"
           "3,64,32,1000,1000,0,0,2.000,1.024,500.000\n"
           "EAL: 1,2,3 not a row\n")
    got = cryptoperf.parse(two)
    assert list(got) == [64]
    assert got[64].mops == pytest.approx(5.0) and got[64].gbps == pytest.approx(2.56)
    assert got[64].cycles_per_op == pytest.approx(400.0)
    assert cryptoperf.parse("") == {}


def test_command():
    cmd = cryptoperf.command([64, 1400], file_prefix="mwcpx")
    assert cmd[0] == "dpdk-test-crypto-perf"
    eal, app = cmd[:cmd.index("--")], cmd[cmd.index("--") + 1:]
    assert {"--no-huge", "--no-pci"} <= set(eal)
    assert eal[eal.index("-l") + 1] == "0,1" and eal[eal.index("--file-prefix") + 1] == "mwcpx"
    assert eal[eal.index("--vdev") + 1] == "crypto_aesni_mb"

    def opt(name):
        return app[app.index(name) + 1]

    assert (opt("--ptest"), opt("--devtype"), opt("--optype")) == ("throughput", "crypto_aesni_mb", "aead")
    assert (opt("--aead-algo"), opt("--aead-op"), opt("--aead-key-sz")) == ("aes-gcm", "encrypt", "16")
    assert (opt("--aead-iv-sz"), opt("--aead-aad-sz"), opt("--digest-sz")) == ("12", "12", "16")
    assert (opt("--buffer-sz"), opt("--burst-sz"), opt("--total-ops")) == ("64,1400", "32", "2000000")
    assert "--csv-friendly" in app and "--silent" in app
    big = cryptoperf.command([64], algo_key_len=32, pmd="crypto_aesni_gcm", pool_sz=4096)
    assert big[big.index("--aead-key-sz") + 1] == "32" and big[big.index("--pool-sz") + 1] == "4096"
    assert big[big.index("--vdev") + 1] == "crypto_aesni_gcm"
    with pytest.raises(ValueError):
        cryptoperf.command([])


def test_real_run_64_vs_1400():
    _require_tool()
    got = cryptoperf.run([64, 1400], repeats=1)
    assert sorted(got) == [64, 1400]
    for s, r in got.items():
        assert r.size == s and r.mops > 0 and r.gbps > 0 and r.cycles_per_op > 0 and r.runs == [r.mops]
    assert got[64].mops > got[1400].mops
    assert got[1400].gbps > got[64].gbps
    assert not glob.glob(f"/var/run/dpdk/mwcp{os.getpid()}*")


def test_real_run_keeps_best_of_repeats():
    _require_tool()
    got = cryptoperf.run([256], repeats=2, total_ops=200_000)
    r = got[256]
    assert len(r.runs) == 2 and r.mops == max(r.runs)


def test_failure_names_command_and_output():
    _require_tool()
    with pytest.raises(RuntimeError) as err:     # AES has no 17-byte key: the PMD refuses
        cryptoperf.run([64], repeats=1, algo_key_len=17, total_ops=1000)
    msg = str(err.value)
    assert "dpdk-test-crypto-perf" in msg and "--aead-key-sz 17" in msg
    assert "capabilities" in msg      # from the tool's output
