#!/usr/bin/python3
"""Sums every suite's report in a folder into one line "N passed, N failed".

Reads GoogleTest JSON (*.json), JUnit XML (*.xml, from pytest) and the fuzz
runner's plain reports (*.fuzz: one line "name passed|failed"). A report that
is missing or unreadable for an expected suite counts as one failure.
"""
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def count_gtest(path):
    data = json.loads(path.read_text())
    failed = 0
    passed = 0
    for suite in data.get("testsuites", []):
        for case in suite.get("testsuite", []):
            if case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                continue
            if case.get("failures"):
                failed += 1
            else:
                passed += 1
    return passed, failed


def count_junit(path):
    root = ET.parse(path).getroot()
    passed = failed = 0
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        if "skipped" in kinds:
            continue
        if kinds & {"failure", "error"}:
            failed += 1
        else:
            passed += 1
    # A collection error yields <testsuite errors="1"> with no testcase.
    for suite in root.iter("testsuite"):
        if int(suite.get("tests", "0")) == 0 and int(suite.get("errors", "0")) > 0:
            failed += int(suite.get("errors"))
    return passed, failed


def count_fuzz(path):
    passed = failed = 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            if parts[1] == "passed":
                passed += 1
            else:
                failed += 1
    return passed, failed


def main():
    folder = pathlib.Path(sys.argv[1])
    expected = {"dataplane_tests.json": count_gtest, "control_tests.json": count_gtest, "integration.xml": count_junit, "perf.xml": count_junit, "k8s.xml": count_junit, "image.xml": count_junit}
    total_passed = total_failed = 0
    for name, counter in expected.items():
        path = folder / name
        try:
            p, f = counter(path)
        except Exception as e:  # a crashed suite leaves no (or a broken) report
            print(f"{name}: no readable report ({e}); counted as 1 failure")
            p, f = 0, 1
        print(f"{name}: {p} passed, {f} failed")
        total_passed += p
        total_failed += f
    fuzz_reports = sorted(folder.glob("*.fuzz"))
    if not fuzz_reports:
        print("fuzz: no report; counted as 1 failure")
        total_failed += 1
    for path in fuzz_reports:
        p, f = count_fuzz(path)
        print(f"{path.name}: {p} passed, {f} failed")
        total_passed += p
        total_failed += f
    print(f"{total_passed} passed, {total_failed} failed")


if __name__ == "__main__":
    main()
