#!/usr/bin/env python3
"""Runs every libFuzzer target in a fuzz build for a bounded time and writes JUnit.

Usage: tests/fuzz/run.py BUILD_DIR RESULTS_XML [--seconds N]

Each target fuzz_<what> starts from the seed corpus tests/fuzz/corpus/<what>/ (copied,
so the checkout is never written) and runs for N seconds. A crash, leak, sanitizer
report or timeout is a failed test case whose message holds the tail of the output and
the reproducer file libFuzzer saved.
"""
import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("results")
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    targets = sorted(p for p in pathlib.Path(args.build, "tests/fuzz").glob("fuzz_*")
                     if p.is_file() and p.stat().st_mode & 0o111)
    suite = ET.Element("testsuite", name="fuzz")
    if not targets:
        case = ET.SubElement(suite, "testcase", classname="fuzz", name="targets-built")
        ET.SubElement(case, "failure", message=f"no fuzz_* binaries under {args.build}")
    for binary in targets:
        what = binary.name[len("fuzz_"):]
        case = ET.SubElement(suite, "testcase", classname="fuzz", name=what)
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{what}-") as tmp:
            corpus = pathlib.Path(tmp, "corpus")
            seeds = HERE / "corpus" / what
            if seeds.is_dir():
                shutil.copytree(seeds, corpus)
            else:
                corpus.mkdir()
            artifacts = pathlib.Path(args.results).parent / f"fuzz-{what}-artifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            cmd = [str(binary), f"-max_total_time={args.seconds}", "-timeout=10",
                   "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/", str(corpus)]
            print(f"fuzz: {what} for {args.seconds}s", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=args.seconds + 120)
            tail = "\n".join(proc.stderr.splitlines()[-25:])
            stats = [l for l in proc.stderr.splitlines() if l.startswith("#") and "DONE" in l]
            print(f"fuzz: {what}: exit {proc.returncode} {stats[-1] if stats else ''}")
            if proc.returncode != 0:
                fail = ET.SubElement(case, "failure",
                                     message=f"{what}: libFuzzer exited {proc.returncode}")
                fail.text = tail
                print(tail)
    ET.ElementTree(suite).write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
