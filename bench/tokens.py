"""Token issuance (RFC 9474 BlindSign) per second against OpenSSL's RSA private operation, one core.

    .venv/bin/python bench/tokens.py [--seconds 4] [--bits 2048 3072]

Per key size: one key from blind.generate_key; 64 messages prepared and blinded beforehand (the
client's work, not counted). Then, alternating in 0.25 s slices so that other load on the machine
hits both sides alike, --seconds of blind.blind_sign (base blinding, CRT, the result check) and
--seconds of cryptography's RSA-PSS sign (SHA-384, salt 48) with the same key: the ceiling, since
it is OpenSSL's private-key operation plus a little padding. ratio = blind_sign/s / ceiling/s;
target >= 0.50 at 2048 bits. The process is pinned to one CPU where the OS allows it.
Figures, not a test: exits 0 either way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

from safespace.privacy import blind  # noqa: E402

TARGET_2048 = 0.50
SLICE_SECONDS = 0.25
POOL = 64


def _run_slice(operation, seconds: float) -> tuple[int, float]:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        operation(count)
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def measure(bits: int, seconds: float) -> tuple[float, float]:
    key = blind.generate_key(bits)
    public_key = key.public_key()
    blinded = [blind.blind(public_key, blind.prepare(os.urandom(32)))[0] for _ in range(POOL)]
    messages = [blind.prepare(os.urandom(32)) for _ in range(POOL)]
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=blind.SALT_LENGTH)

    def issue(i: int) -> None:
        blind.blind_sign(key, blinded[i % POOL])

    def ceiling(i: int) -> None:
        key.sign(messages[i % POOL], pss, hashes.SHA384())

    issue(0), ceiling(0)  # warm caches: the key's CRT numbers, OpenSSL's Montgomery contexts
    totals = {issue: [0, 0.0], ceiling: [0, 0.0]}
    while min(total[1] for total in totals.values()) < seconds:
        for operation, total in totals.items():
            count, elapsed = _run_slice(operation, SLICE_SECONDS)
            total[0] += count
            total[1] += elapsed
    return totals[issue][0] / totals[issue][1], totals[ceiling][0] / totals[ceiling][1]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((set(line.split(":", 1)[1].split()) for line in cpuinfo if line.startswith("flags")), set())
    except OSError:
        return set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per side and key size")
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    backend = f"gmpy2 {blind.gmpy2.version()} powmod_sec" if blind.gmpy2 else "Python pow (gmpy2 not installed)"
    print(f"blind_sign backend: {backend}; {args.seconds:g} s per side, one core")
    if "avx512ifma" in _cpu_flags():
        print("this CPU has AVX-512 IFMA: OpenSSL's RSA uses it for the ceiling, GMP's powmod_sec does not")
    print(f"{'bits':>5}  {'blind_sign/s':>12}  {'ceiling/s':>10}  {'ratio':>6}")
    for bits in args.bits:
        issued, ceiling = measure(bits, args.seconds)
        ratio = issued / ceiling
        verdict = ""
        if bits == 2048:
            verdict = f"  target >= {TARGET_2048:.2f}: " + ("met" if ratio >= TARGET_2048 else "NOT met")
        print(f"{bits:>5}  {issued:>12.0f}  {ceiling:>10.0f}  {ratio:>6.2f}{verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
