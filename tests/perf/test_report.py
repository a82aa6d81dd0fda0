"""Tests for perf/meshwire_perf/report.py against tests/perf/sample_results.json.

Run: /usr/bin/python3 -m pytest -q tests/perf/test_report.py
"""
import copy
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).with_name("sample_results.json")
sys.path.insert(0, str(ROOT / "perf"))

from meshwire_perf import report  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = {
    "throughput_encrypt.png", "throughput_decrypt.png", "throughput_local.png",
    "latency.png", "scenario_smoke-midtrial.png", "scenario_sa-rekey.png",
}


@pytest.fixture(scope="module")
def sample():
    return report.load(SAMPLE)


@pytest.fixture(scope="module")
def md(sample):
    return report.markdown(sample)


def section(md, heading):
    """The text of the "## heading..." section, up to the next "## "."""
    start = md.index("\n## " + heading)
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start:end]


def row(text, *first_cells):
    """Cells of the table row whose leading cells are first_cells."""
    prefix = "| " + " | ".join(first_cells) + " |"
    rows = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, got {rows}"
    return [c.strip() for c in rows[0].strip().strip("|").split(" | ")]


def header(text):
    return [c.strip() for c in text.split("\n| ", 1)[1].split("\n", 1)[0].strip().strip("|").split(" | ")]


def cell(text, first_cells, column):
    return row(text, *first_cells)[header(text).index(column)]


def result(sample, suite, system, traffic, size):
    for r in sample["results"]:
        if (r["suite"], r["system"], r["traffic"], r["frame_size"]) == (suite, system, traffic, size):
            return r
    raise KeyError((suite, system, traffic, size))


# --------------------------------------------------------------------------
# The sample itself


def test_sample_covers_the_schema(sample):
    assert sample["meshwire_perf"] == 1
    assert set(sample) >= {"started", "duration_s", "host", "settings", "crypto_bound",
                           "results", "targets", "scenarios"}
    assert set(sample["host"]) == {"cpus", "cpu_model", "tsc_hz", "kernel", "dpdk", "git"}
    assert set(sample["settings"]) == {"trial_s", "resolution", "pdr_loss", "quick",
                                       "dut_lcores", "generator_lcore"}
    rs = sample["results"]
    assert {r["suite"] for r in rs} == {"encrypt", "decrypt", "local"}
    assert {r["system"] for r in rs} == {"meshwire", "ipsec-secgw", "testpmd"}
    assert {"ipv4-udp", "ipv6-udp", "ipv4-tcp"} <= {r["traffic"] for r in rs}
    assert "imix" in {r["frame_size"] for r in rs}
    assert any(r["ndr"] is None for r in rs)
    assert any(r["generator_bound"] for r in rs)
    assert any(r.get("note") for r in rs)
    for r in rs:
        assert r["trials"] and set(r["trials"][0]) == {"rate_pps", "offered_pps", "received_pps", "loss"}
        if r["ndr"]:
            assert set(r["ndr"]) == {"pps", "bps", "loss", "offered_pps", "latency_ns"}
            assert set(r["ndr"]["latency_ns"]) == {"p50", "p90", "p99", "p99.9", "max", "samples"}
    assert {t["met"] for t in sample["targets"]} == {True, False}
    assert any("rx_per_bin" in s["result"] for s in sample["scenarios"])
    assert any("rx_per_bin" not in s["result"] for s in sample["scenarios"])


def test_load_refuses_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="not a meshwire_perf"):
        report.load(other)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"meshwire_perf": 2}))
    with pytest.raises(ValueError, match="format 2"):
        report.load(newer)


# --------------------------------------------------------------------------
# Markdown


def test_header_has_host_and_settings(md):
    head = md.split("\n## ", 1)[0]
    assert head.startswith("# meshwire benchmark report")
    for text in ("2026-11-30T12:00:00Z", "512.3 s", "AMD EPYC 9B14 96-Core Processor",
                 "2 CPUs", "TSC 2.096 GHz", "6.1.0-28-cloud-amd64", "22.11.11", "abc1234",
                 "| Trial length | 1 s |", "| PDR loss allowance | 0.50% |",
                 "| DUT lcores | 0,1 |", "| Generator lcore | 0 |", "| Quick mode | no |",
                 "| Search resolution | 0.02 |"):
        assert text in head, text


def test_encrypt_numbers_formatted(md):
    enc = section(md, "encrypt")
    assert enc.startswith("\n## encrypt (pod → ESP)")
    key = ("ipv4-udp", "64")
    assert cell(enc, key, "meshwire NDR Mpps") == "4.10"
    assert cell(enc, key, "meshwire NDR Gbit/s") == "2.10"      # 2 099 200 000 bps
    assert cell(enc, key, "meshwire PDR Mpps") == "4.35"
    assert cell(enc, key, "meshwire p50 / p99 / p99.9 µs") == "5.1 / 12.0 / 30.1"
    assert cell(enc, key, "ipsec-secgw NDR Mpps") == "2.90"
    assert cell(enc, ("ipv4-udp", "1400"), "meshwire NDR Gbit/s") == "17.36"


def test_ratio_columns(sample, md):
    def pps(*k):
        return result(sample, *k)["ndr"]["pps"]

    enc = section(md, "encrypt")
    want = pps("encrypt", "meshwire", "ipv4-udp", 64) / pps("encrypt", "ipsec-secgw", "ipv4-udp", 64)
    assert cell(enc, ("ipv4-udp", "64"), "meshwire ÷ ipsec-secgw (NDR / PDR / overload)").split(" / ")[0] == f"{want:.2f}×" == "1.41×"
    want = pps("encrypt", "meshwire", "ipv4-udp", "imix") / pps("encrypt", "ipsec-secgw", "ipv4-udp", "imix")
    assert cell(enc, ("ipv4-udp", "imix"), "meshwire ÷ ipsec-secgw (NDR / PDR / overload)").split(" / ")[0] == f"{want:.2f}×"
    # no ipsec-secgw point at ipv4-tcp 64 B
    assert cell(enc, ("ipv4-tcp", "64"), "meshwire ÷ ipsec-secgw (NDR / PDR / overload)").split(" / ")[0] == "—"

    dec = section(md, "decrypt")
    want = pps("decrypt", "meshwire", "ipv4-udp", 64) / pps("encrypt", "meshwire", "ipv4-udp", 64)
    assert cell(dec, ("ipv4-udp", "64"), "meshwire ÷ meshwire encrypt (NDR / PDR / overload)").split(" / ")[0] == f"{want:.2f}×" == "1.07×"

    loc = section(md, "local")
    want = pps("local", "meshwire", "ipv4-udp", 64) / pps("local", "testpmd", "ipv4-udp", 64)
    assert cell(loc, ("ipv4-udp", "64"), "meshwire ÷ testpmd (NDR / PDR / overload)").split(" / ")[0] == f"{want:.2f}×" == "0.73×"
    assert "testpmd ÷" not in loc        # the baseline has no ratio to itself


def test_percent_of_crypto_bound(sample, md):
    enc = section(md, "encrypt")
    col = "meshwire % of crypto bound"
    want = result(sample, "encrypt", "meshwire", "ipv4-udp", 64)["ndr"]["pps"] / (
        sample["crypto_bound"]["64"]["mops"] * 1e6)
    assert cell(enc, ("ipv4-udp", "64"), col) == f"{want * 100:.1f}%" == "25.5%"
    assert cell(enc, ("ipv4-udp", "1400"), col) == "50.8%"
    assert cell(enc, ("ipv4-udp", "imix"), col) == "—"          # no crypto size for imix
    assert "AEAD payload bytes" in enc
    assert col not in section(md, "decrypt")


def test_null_ndr_renders_dash(md):
    enc = section(md, "encrypt")
    key = ("ipv6-udp", "1400")
    assert cell(enc, key, "ipsec-secgw NDR Mpps") == "—"
    assert cell(enc, key, "ipsec-secgw NDR Gbit/s") == "—"
    assert cell(enc, key, "ipsec-secgw p50 / p99 / p99.9 µs") == "—"
    assert cell(enc, key, "ipsec-secgw PDR Mpps") == "1.02"     # PDR survived
    assert cell(enc, key, "meshwire ÷ ipsec-secgw (NDR / PDR / overload)").split(" / ")[0] == "—"
    assert "NDR search failed" in enc                            # the note is shown


def test_null_ndr_and_pdr_and_missing_sections():
    doc = {"meshwire_perf": 1, "results": [
        {"suite": "encrypt", "system": "meshwire", "traffic": "ipv4-udp", "frame_size": 64,
         "ndr": None, "pdr": None, "trials": [], "generator_bound": False}]}
    text = report.markdown(doc)
    assert row(section(text, "encrypt"), "ipv4-udp", "64")[2:] == ["—"] * 5
    assert "## Targets" not in text and "## Scenarios" not in text


def test_frame_sizes_sorted_numerically_imix_last(md):
    enc = section(md, "encrypt")
    sizes = [ln.split(" | ")[1] for ln in enc.splitlines() if ln.startswith("| ipv4-udp |")]
    assert sizes == ["64", "512", "1400", "imix"]
    assert sorted(["imix", "1400", 64, "128", 512.0], key=report.size_key) == \
        [64, "128", 512.0, "1400", "imix"]
    crypto = section(md, "Crypto bound")
    assert [ln.split(" | ")[0][2:] for ln in crypto.splitlines()
            if ln[2:3].isdigit()] == ["64", "512", "1400"]


def test_traffic_order(md):
    enc = section(md, "encrypt")
    traffic = [ln.split(" | ")[0][2:] for ln in enc.splitlines()
               if ln.startswith("| ipv")]
    assert traffic == ["ipv4-udp"] * 4 + ["ipv6-udp"] * 2 + ["ipv4-tcp"]


def test_targets_table(sample, md):
    tg = section(md, "Targets")
    assert "2 of 4 met." in tg
    assert row(tg, "✅", "encrypt 64 B vs ipsec-secgw") == [
        "✅", "encrypt 64 B vs ipsec-secgw", "NDR ratio", "1.41", "≥ 1.3",
        "meshwire 4.10 Mpps / ipsec-secgw 2.90 Mpps"]
    assert row(tg, "❌", "encrypt 64 B p99 latency at NDR")[4] == "≤ 10"
    assert tg.count("✅") == 2 and tg.count("❌") == 2
    doc = copy.deepcopy(sample)
    doc["targets"][0]["met"] = None
    assert "| — | encrypt 64 B vs ipsec-secgw |" in report.markdown(doc)


def test_generator_bound_footnote(md):
    loc = section(md, "local")
    assert cell(loc, ("ipv4-udp", "64"), "testpmd NDR Mpps") == "9.85 †"
    assert cell(loc, ("ipv4-udp", "64"), "meshwire NDR Mpps") == "7.21"
    assert "† generator-bound: the generator could not offer more." in loc
    assert "generator-bound" not in section(md, "encrypt")


def test_crypto_and_scenarios(md):
    crypto = section(md, "Crypto bound")
    assert row(crypto, "64") == ["64", "16.10", "8.24", "130.2"]
    assert "Crypto sizes are AEAD payload bytes." in crypto
    sc = section(md, "Scenarios")
    assert row(sc, "smoke-midtrial")[2:] == ["100,000 pps", "0.000%", "0 ms"]
    assert row(sc, "sa-rekey")[2:] == ["1,000,000 pps", "1.485%", "20 ms"]
    assert row(sc, "route-withdraw")[2:] == ["500,000 pps", "0.120%", "3.5 ms"]


def test_pipes_in_text_are_escaped(sample):
    doc = copy.deepcopy(sample)
    doc["targets"][0]["detail"] = "a | b"
    assert "a \\| b" in report.markdown(doc)


# --------------------------------------------------------------------------
# Plots and files


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_plots_are_valid_pngs(sample, tmp_path):
    paths = report.plots(sample, tmp_path)
    assert {p.name for p in paths} == EXPECTED_PLOTS
    assert paths[0].name == "throughput_encrypt.png"
    for p in paths:
        assert p.parent == tmp_path and p.is_file()
        (w, h), nbytes = png_size(p)
        assert w >= 600 and h >= 400, (p.name, w, h)
        assert nbytes > 15_000, (p.name, nbytes)    # text, lines and bars, not a blank canvas
    import matplotlib.image
    img = matplotlib.image.imread(tmp_path / "latency.png")
    assert img.shape[0] > 400 and img.std() > 0.05     # not a single colour


def test_plots_skip_scenarios_without_bins_and_odd_names(sample, tmp_path):
    doc = copy.deepcopy(sample)
    doc["scenarios"].append({"name": "a b/c", "description": "", "rate_pps": 10,
                             "result": {"loss": 0.0, "bins_ms": 100, "rx_per_bin": [1, 1, 0, 1]}})
    doc["scenarios"].append({"name": "failed", "rate_pps": 10, "result": None})
    names = {p.name for p in report.plots(doc, tmp_path)}
    assert "scenario_a_b_c.png" in names
    assert "scenario_route-withdraw.png" not in names and "scenario_failed.png" not in names
    assert "| failed |" in report.markdown(doc)


def test_write_all(sample, tmp_path):
    out = report.write_all(sample, tmp_path / "run")
    d = tmp_path / "run"
    assert out["json"] == d / "results.json"
    assert out["markdown"] == d / "report.md"
    assert {p.name for p in out["plots"]} == EXPECTED_PLOTS
    assert sorted(f.name for f in d.iterdir()) == sorted(EXPECTED_PLOTS | {"results.json", "report.md"})
    assert json.loads(out["json"].read_text()) == sample
    assert out["json"].read_text().startswith('{\n  "meshwire_perf": 1')
    text = out["markdown"].read_text(encoding="utf-8")
    assert text == report.markdown(sample, [p.name for p in out["plots"]])
    assert "![latency](latency.png)" in text
    for p in out["plots"]:
        png_size(p)


def test_cli(tmp_path):
    src = tmp_path / "in" / "results.json"
    src.parent.mkdir()
    src.write_text(SAMPLE.read_text())
    script = ROOT / "perf" / "meshwire_perf" / "report.py"
    r = subprocess.run([sys.executable, str(script), str(src), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "report.md").is_file()
    assert (tmp_path / "out" / "throughput_encrypt.png").is_file()
    # without --out it regenerates next to the input
    r = subprocess.run([sys.executable, str(script), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (src.parent / "report.md").read_text(encoding="utf-8").startswith("# meshwire benchmark report")
    assert json.loads(src.read_text()) == json.loads(SAMPLE.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, str(script), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a meshwire_perf" in r.stderr


def test_errors_are_listed_first():
    doc = {"meshwire_perf": 1, "results": [], "errors": ["ipsec-secgw: build failed\nlong log"]}
    text = report.markdown(doc)
    assert "## Errors" in text and "- ipsec-secgw: build failed" in text and "long log" not in text
    assert "## Errors" not in report.markdown({"meshwire_perf": 1, "results": []})
