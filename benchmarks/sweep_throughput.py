"""Sweep throughput: how fast `wgan sweep` trains, against the CPU's matmul roofline and PyTorch.

Run from the repository root:

    .venv/bin/python benchmarks/sweep_throughput.py [--quick] [--out FILE] [--workdir DIR]

One process measures, for a 9-run sweep (c in 0.001, 0.01, 0.1 times seeds 0, 1, 2) at the
default size (MLPs 512 x 3, batch 256) and at a small size (128 x 3, batch 64), n_critic 5,
log_every 50 (diagnostics on, as `wgan sweep` runs them):

- throughput in run-generator-iterations per second (9 runs x steps / seconds), through
  `wgan_cli.sweep.run_sweep`, the code path of `wgan sweep`. Steady state excludes compilation
  by subtracting the first chunk: the sweep's progress callback fires once per chunk, and
  (t_last - t_first) / (chunks - 1) is the steady seconds per chunk. For the small size a
  second, identical sweep in the same process (the program is cached by `train.compiled`)
  cross-checks that estimate;
- compile time: the first chunk's excess over a steady chunk, and a direct
  `jit(...).lower(...).compile()` of a fresh copy of the chunk program;
- peak memory: the process's ru_maxrss after each size (monotone, so the small size runs
  first) and XLA's own memory analysis of the chunk program (jax has no memory_stats on CPU);
- the fp32 matmul roofline: best of several jitted 2048 x 2048 matmuls;
- GEMM ceilings at the sweep's own shapes: the batched (vmapped over 9 runs) Dense forward and
  weight-gradient matmuls alone, which bound what the training step can reach;
- FLOPs per generator iteration, analytic (below) and from XLA's cost analysis;
- the diagnostics share: the same compiled chunk called alone, back to back (no host work),
  and the on-device evaluation alone, against the sweep's steady seconds per chunk;
- the peer: a plain eager PyTorch loop of the same model and update rule, one run at a time,
  if torch is installed (it is an optional benchmark extra, never a wgan dependency).

FLOPs per generator iteration (matmuls only; bias adds, activations, RNG, optimizer and clip
updates are O(parameters) or O(rows x width) and below 2% here; XLA's count includes them).
A Dense layer in -> out on n rows costs 2 n in out forward. Its backward costs 2 n in out for
the weight gradient plus 2 n in out for the input gradient, which JAX skips where the input
needs no gradient (the data or noise entering the network being trained). With C and G the
critic's and generator's layer lists and B the batch size:

    fwd(N, n)        = sum over N's layers of 2 n in out
    bwd_params(N, n) = fwd(N, n) + fwd(N without its first layer, n)
    bwd_input(N, n)  = fwd(N, n)
    critic step      = fwd(C, 2B) + bwd_params(C, 2B) + fwd(G, B)
                       (real and fake concatenated into 2B rows; the fake batch is generated
                       without gradient)
    generator step   = fwd(G, B) + fwd(C, B) + bwd_input(C, B) + bwd_params(G, B)
    iteration        = n_critic x critic step + generator step

XLA's cost analysis of a whole chunk counts each `lax.scan` (while loop) body once, not times
its trip count, so the cross-check analyses one vmapped critic step and one vmapped generator
step instead and combines them with the same n_critic x critic + generator formula.

% of roofline = achieved FLOP/s (throughput x analytic FLOPs per iteration) / measured peak.
The machine is shared: the load average is printed at the start and before each phase.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgan_cli.devices import use_host_devices

# As `wgan sweep` does by default: one XLA device per core, the run axis sharded over them.
# XLA reads the flag once, when jax starts, so it is set before jax is imported.
use_host_devices(None)

import jax
import jax.numpy as jnp

import wgan_cli.sweep as sweep_module
from wgan_cli import config, metrics, train
from wgan_cli.sweep import Grid, run_sweep

CS = [0.001, 0.01, 0.1]
SEEDS = [0, 1, 2]
N_RUNS = len(CS) * len(SEEDS)
N_CRITIC = 5
DEPTH = 3
DATA_DIM = 2  # swissroll, the default data set
NOISE_DIM = 2  # generator.noise_dim's default

#: The issue's targets ("Sweep throughput").
TARGET_DEFAULT_ROOFLINE = 0.75
TARGET_SMALL_ROOFLINE = 0.60
TARGET_SMALL_VS_TORCH = 6.0
TARGET_DIAGNOSTICS = 0.10


@dataclass(frozen=True)
class Size:
    """One model size of the benchmark, with how long to run it."""

    name: str
    hidden: int
    batch: int
    steps: int
    log_every: int
    second_sweep: bool  # time an identical second sweep (affordable at the small size only)

    def overrides(self) -> list[str]:
        """`--set` overrides giving this size on top of the default experiment."""
        return [
            f"critic.hidden={self.hidden}",
            f"critic.depth={DEPTH}",
            f"generator.hidden={self.hidden}",
            f"generator.depth={DEPTH}",
            f"train.batch_size={self.batch}",
            f"train.n_critic={N_CRITIC}",
            f"train.steps={self.steps}",
            f"train.log_every={self.log_every}",
        ]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hidden}x{DEPTH}, B{self.batch})"


@dataclass
class SizeResult:
    """Everything measured for one size; None where a measurement was unavailable."""

    size: Size
    load_before: float
    sweep_wall_s: float = math.nan
    first_chunk_s: float = math.nan
    steady_chunk_s: float = math.nan
    second_sweep_wall_s: float | None = None
    compile_direct_s: float | None = None
    lower_direct_s: float | None = None
    xla_memory_mib: float | None = None
    pure_chunk_s: float = math.nan
    pure_chunks: int = 0
    eval_s: float | None = None
    ot_s: float = math.nan
    flops_analytic: float = math.nan
    flops_xla: float | None = None
    eval_flops_xla: float | None = None
    gemm: dict[str, float] = field(default_factory=dict)
    maxrss_mib: float = math.nan
    torch_rates: dict[int, tuple[float, float]] | None = None  # threads -> (run-it/s, CPU)
    sweep_cpu_share: float = math.nan
    pure_cpu_share: float = math.nan

    @property
    def torch_best(self) -> tuple[float, float] | None:
        """(run-it/s, CPU share) at PyTorch's fastest thread count: the peer at its best."""
        return max(self.torch_rates.values()) if self.torch_rates else None

    @property
    def torch_its(self) -> float | None:
        return self.torch_best[0] if self.torch_best else None

    @property
    def chunk_its(self) -> int:
        """Run-iterations in one chunk of the group."""
        return N_RUNS * self.size.log_every

    @property
    def steady_its(self) -> float:
        return self.chunk_its / self.steady_chunk_s

    @property
    def second_its(self) -> float | None:
        if self.second_sweep_wall_s is None:
            return None
        return N_RUNS * self.size.steps / self.second_sweep_wall_s

    @property
    def compile_excess_s(self) -> float:
        return self.first_chunk_s - self.steady_chunk_s

    @property
    def train_only_chunk_s(self) -> float:
        """The pure chunk less its on-device evaluation: training work alone."""
        return self.pure_chunk_s - (self.eval_s or 0.0)

    @property
    def diagnostics_share(self) -> float:
        return 1.0 - self.train_only_chunk_s / self.steady_chunk_s


# ---------------------------------------------------------------------------------------------
# Machine and timing helpers


def log(message: str) -> None:
    """Progress goes to stderr so stdout carries only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float:
    """1-minute load average: above the core count, other work competes with the benchmark."""
    return os.getloadavg()[0]


def cpu_model() -> str:
    """The CPU model line of /proc/cpuinfo, plus its widest SIMD flag (sets the FMA peak)."""
    model, flags = platform.processor() or "unknown", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value
    simd = next((f for f in ("avx512f", "avx2", "avx") if f in flags.split()), "none")
    return f"{model} ({simd})"


def maxrss_mib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_share(cpu_s: float, wall_s: float) -> float:
    """Share of all cores this process used over a span: below 1, others took the rest.

    process_time counts every thread of the process (XLA's and torch's pools included), so
    on a shared machine this says how much of it a measurement actually got.
    """
    return cpu_s / (wall_s * (os.cpu_count() or 1))


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of `repeats` blocking calls, after one warm-up call (compiles if needed)."""
    jax.block_until_ready(fn())
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of a jitted n x n matmul, best of several: the roofline's ceiling."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / best_time(lambda: matmul(a, b), repeats)


def gemm_ceilings(size: Size, repeats: int) -> dict[str, float]:
    """FLOP/s of the sweep's dominant matmul shapes, vmapped over the runs as the sweep does.

    A hidden h x h layer of the critic step multiplies (runs, 2B, h) by (runs, h, h) forward
    and contracts (runs, 2B, h) with (runs, 2B, h) for the weight gradient. These batched
    GEMMs alone bound the training step's FLOP rate from above.
    """
    rows, h = 2 * size.batch, size.hidden
    key_x, key_w = jax.random.split(jax.random.key(1))
    x = jax.random.normal(key_x, (N_RUNS, rows, h), jnp.float32)
    w = jax.random.normal(key_w, (N_RUNS, h, h), jnp.float32)
    flops = 2 * N_RUNS * rows * h * h
    forward = jax.jit(lambda x, w: jnp.einsum("rbi,rio->rbo", x, w))
    weight_grad = jax.jit(lambda x, g: jnp.einsum("rbi,rbo->rio", x, g))
    single = jax.jit(jnp.matmul)
    return {
        "batched forward": flops / best_time(lambda: forward(x, w), repeats),
        "batched weight-grad": flops / best_time(lambda: weight_grad(x, x), repeats),
        "one run's forward": flops / N_RUNS / best_time(lambda: single(x[0], w[0]), repeats),
    }


# ---------------------------------------------------------------------------------------------
# FLOPs


def dense_layers(d_in: int, hidden: int, depth: int, d_out: int) -> list[tuple[int, int]]:
    """(in, out) of each Dense layer of an MLP with `depth` hidden layers."""
    dims = [d_in] + [hidden] * depth + [d_out]
    return list(zip(dims[:-1], dims[1:], strict=True))


def fwd(layers: list[tuple[int, int]], n: int) -> int:
    return sum(2 * n * i * o for i, o in layers)


def bwd_params(layers: list[tuple[int, int]], n: int) -> int:
    """Weight gradients of every layer plus input gradients of all but the first."""
    return fwd(layers, n) + fwd(layers[1:], n)


def bwd_input(layers: list[tuple[int, int]], n: int) -> int:
    """Input gradients of every layer, no weight gradients (the critic inside the G step)."""
    return fwd(layers, n)


def iteration_flops(size: Size) -> int:
    """Matmul FLOPs of one generator iteration (see the module docstring for the formula)."""
    critic = dense_layers(DATA_DIM, size.hidden, DEPTH, 1)
    gen = dense_layers(NOISE_DIM, size.hidden, DEPTH, DATA_DIM)
    b = size.batch
    critic_step = fwd(critic, 2 * b) + bwd_params(critic, 2 * b) + fwd(gen, b)
    gen_step = fwd(gen, b) + fwd(critic, b) + bwd_input(critic, b) + bwd_params(gen, b)
    return N_CRITIC * critic_step + gen_step


def xla_flops(compiled: Any) -> float | None:
    """The 'flops' entry of XLA's cost analysis (a dict, or a list of one in older jax)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # backends may not implement it: report n/a rather than fail
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def xla_iteration_flops(prog: train.Program, hp: Any, arrays: Any, state: Any) -> float | None:
    """Per-run FLOPs of one iteration from XLA: n_critic x critic step + generator step.

    The steps are analysed separately because cost analysis counts a scan's body only once.
    """
    try:
        critic = jax.jit(jax.vmap(functools.partial(train.critic_step, prog), (0, None, 0, 0)))
        gen = jax.jit(jax.vmap(functools.partial(train.generator_step, prog), (0, 0, 0)))
        c_flops = xla_flops(critic.lower(hp, arrays, state, state.key).compile())
        g_flops = xla_flops(gen.lower(hp, state, state.key).compile())
    except Exception as exc:  # the train API moved on: say so, keep the rest of the benchmark
        log(f"  XLA per-step cost analysis unavailable: {exc!r}")
        return None
    if c_flops is None or g_flops is None:
        return None
    return (N_CRITIC * c_flops + g_flops) / N_RUNS


# ---------------------------------------------------------------------------------------------
# The sweep, instrumented


@dataclass
class ChunkProbe:
    """Records the compiled chunk the sweep calls, its arguments and its latest result.

    With them the same compiled program can be timed alone after the sweep (no host work in
    between), which separates training from the host-side diagnostics.
    """

    prog: Any = None
    chunk: Callable | None = None
    rest: tuple = ()  # the chunk's arguments after the state: (hp, arrays)
    result: Any = None

    def wrap(self, compiled: Callable) -> Callable:
        def patched(prog: Any) -> tuple:
            parts = compiled(prog)
            self.prog, self.chunk = prog, parts[1]

            def recording_chunk(state: Any, *rest: Any) -> Any:
                self.rest = rest
                self.result = parts[1](state, *rest)
                return self.result

            return (parts[0], recording_chunk, *parts[2:])

        return patched


@contextlib.contextmanager
def probing(probe: ChunkProbe) -> Iterator[None]:
    """Route the sweep's `compiled` through the probe; the compiled programs are unchanged."""
    original = sweep_module.compiled
    sweep_module.compiled = probe.wrap(original)
    try:
        yield
    finally:
        sweep_module.compiled = original


def timed_sweep(size: Size, out: Path) -> tuple[float, list[float], float]:
    """Run the 9-run sweep as `wgan sweep` does: its wall, per-chunk timestamps, CPU share.

    The first timestamp is the group's "compiling and starting" line, then one per chunk,
    taken after that chunk's host diagnostics (exact OT) and CSV rows are done.
    """
    stamps: list[float] = []
    raw = config.load_raw(None, size.overrides())
    start, cpu = time.perf_counter(), time.process_time()
    run_sweep(
        raw, Grid(cs=CS, seeds=SEEDS), out, progress=lambda _: stamps.append(time.perf_counter())
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    expected = size.steps // size.log_every + 1
    if len(stamps) != expected:
        raise RuntimeError(f"expected one group of {expected} progress lines, got {len(stamps)}")
    return wall, stamps, cpu_share(cpu, wall)


def time_pure_chunks(
    probe: ChunkProbe, budget_s: float, steady_s: float
) -> tuple[float, int, float]:
    """Mean seconds of the sweep's compiled chunk called back to back, nothing else running.

    Continues from the sweep's final state; as many chunks as fit in budget_s (1 to 10).
    Returns (seconds per chunk, chunks timed, CPU share).
    """
    count = max(1, min(10, round(budget_s / steady_s)))
    state = probe.result[0]
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        state, row = probe.chunk(state, *probe.rest)
        jax.block_until_ready((state, row))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    probe.result = (state, row)
    return wall / count, count, cpu_share(cpu, wall)


def time_eval(probe: ChunkProbe, repeats: int) -> tuple[float | None, float | None]:
    """Seconds and per-run FLOPs of the on-device evaluation alone (one chunk's diagnostics)."""
    try:
        evaluate = jax.jit(
            jax.vmap(functools.partial(train.evaluate, probe.prog), in_axes=(0, None, 0))
        )
        hp, arrays = probe.rest
        state = probe.result[0]
        flops = xla_flops(evaluate.lower(hp, arrays, state).compile())
        seconds = best_time(lambda: evaluate(hp, arrays, state), repeats)
    except Exception as exc:  # the train API moved on: say so, keep the rest of the benchmark
        log(f"  on-device evaluation timing unavailable: {exc!r}")
        return None, None
    return seconds, (flops / N_RUNS if flops is not None else None)


def time_host_ot(probe: ChunkProbe) -> float:
    """Seconds of one chunk's exact W1 on the host: w1_exact for each run's eval samples."""
    host = jax.device_get(probe.result[1])
    start = time.perf_counter()
    for r in range(N_RUNS):
        metrics.w1_exact(host["real"][r], host["fake"][r])
    return time.perf_counter() - start


def compile_directly(probe: ChunkProbe) -> tuple[float, float, float | None]:
    """(lower s, compile s, XLA memory MiB) of a fresh copy of the group's chunk program.

    A new jit object, so nothing is served from jax's in-memory caches; built exactly as
    `train.compiled` builds the chunk.
    """
    chunk = jax.jit(
        jax.vmap(functools.partial(train.train_chunk, probe.prog), in_axes=(0, 0, None))
    )
    start = time.perf_counter()
    lowered = chunk.lower(probe.result[0], *probe.rest)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    memory = None
    with contextlib.suppress(Exception):
        stats = compiled.memory_analysis()
        total = stats.temp_size_in_bytes + stats.argument_size_in_bytes
        memory = (total + stats.output_size_in_bytes - stats.alias_size_in_bytes) / 2**20
    return lowered_at - start, done - lowered_at, memory


def measure_size(size: Size, workdir: Path, quick: bool) -> SizeResult:
    """Every wgan-side measurement of one size, in an order that keeps compiles apart."""
    result = SizeResult(size, load_before=load_average())
    log(f"{size.label}: load {result.load_before:.2f}; 9-run sweep of {size.steps} steps")
    probe = ChunkProbe()
    with probing(probe):
        wall, stamps, result.sweep_cpu_share = timed_sweep(size, workdir / f"{size.name}-sweep1")
    chunks = len(stamps) - 1
    result.sweep_wall_s = wall
    result.first_chunk_s = stamps[1] - stamps[0]
    result.steady_chunk_s = (stamps[-1] - stamps[1]) / (chunks - 1)
    log(f"  sweep {wall:.1f}s; steady {result.steady_its:.1f} run-it/s")

    if size.second_sweep:
        result.second_sweep_wall_s, _, _ = timed_sweep(size, workdir / f"{size.name}-sweep2")
        log(f"  second sweep {result.second_sweep_wall_s:.1f}s")

    budget = 3.0 if quick else 15.0
    pure = time_pure_chunks(probe, budget, result.steady_chunk_s)
    result.pure_chunk_s, result.pure_chunks, result.pure_cpu_share = pure
    result.eval_s, result.eval_flops_xla = time_eval(probe, repeats=2 if quick else 3)
    result.ot_s = time_host_ot(probe)
    log(f"  pure chunk {result.pure_chunk_s:.2f}s, eval {result.eval_s}, OT {result.ot_s:.2f}s")

    result.lower_direct_s, result.compile_direct_s, result.xla_memory_mib = compile_directly(probe)
    result.flops_analytic = iteration_flops(size)
    hp, arrays = probe.rest
    result.flops_xla = xla_iteration_flops(probe.prog, hp, arrays, probe.result[0])
    result.gemm = gemm_ceilings(size, repeats=3 if quick else 10)
    result.maxrss_mib = maxrss_mib()
    return result


# ---------------------------------------------------------------------------------------------
# The PyTorch peer


def torch_peer(size: Size, seconds: float) -> dict[int, tuple[float, float]] | None:
    """Per thread count (1 and all cores, torch's default), the (run-iterations/s, CPU share)
    of a plain eager PyTorch WGAN loop: one run, the same update rule; None without torch.

    As the WGAN paper's code: RMSprop (lr 5e-5, alpha 0.99, eps 1e-8), n_critic critic steps
    each followed by clamping every critic parameter into [-c, c], the fake batch generated
    without gradient, then one generator step with the critic's parameters frozen. Real and
    fake go through the critic as one concatenated batch, as in wgan. No diagnostics.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    c, b = 0.01, size.batch

    def mlp(d_in: int, d_out: int) -> torch.nn.Sequential:
        layers: list[torch.nn.Module] = []
        for i, o in dense_layers(d_in, size.hidden, DEPTH, d_out)[:-1]:
            layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
        layers.append(torch.nn.Linear(size.hidden, d_out))
        return torch.nn.Sequential(*layers)

    critic, gen = mlp(DATA_DIM, 1), mlp(NOISE_DIM, DATA_DIM)
    opt_c = torch.optim.RMSprop(critic.parameters(), lr=5e-5, alpha=0.99, eps=1e-8)
    opt_g = torch.optim.RMSprop(gen.parameters(), lr=5e-5, alpha=0.99, eps=1e-8)

    def clamp() -> None:
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-c, c)

    def swissroll(n: int) -> torch.Tensor:
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n))
        x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
        return (x + 0.25 * torch.randn(n, 2)) / 7.5

    def iteration() -> None:
        critic.requires_grad_(True)
        for _ in range(N_CRITIC):
            with torch.no_grad():
                fake = gen(torch.randn(b, NOISE_DIM))
            out = critic(torch.cat([swissroll(b), fake]))
            loss = out[b:].mean() - out[:b].mean()
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            clamp()
        critic.requires_grad_(False)
        gen_loss = -critic(gen(torch.randn(b, NOISE_DIM))).mean()
        opt_g.zero_grad(set_to_none=True)
        gen_loss.backward()
        opt_g.step()

    clamp()
    default_threads = torch.get_num_threads()
    rates = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        rates[n] = _rate(iteration, seconds / 2)
        log(f"  PyTorch {torch.__version__}, {n} thread(s): {rates[n][0]:.2f} run-it/s")
    torch.set_num_threads(default_threads)
    return rates


def _rate(iteration: Callable[[], None], seconds: float) -> tuple[float, float]:
    """(iterations/s, CPU share) of an eager loop: 2 warm-up calls, then at least 3 timed.

    PyTorch's thread count is chosen per measurement because OpenMP's barriers make 2 threads
    far slower than 1 whenever the machine is oversubscribed (as a shared 2-core box often is).
    """
    for _ in range(2):
        iteration()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while done < 3 or time.perf_counter() - start < seconds:
        iteration()
        done += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return done / wall, cpu_share(cpu, wall)


# ---------------------------------------------------------------------------------------------
# Report


def _torch_version() -> str:
    import torch

    return torch.__version__


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:{spec}}{suffix}"


def table_rows(results: list[SizeResult], peak: float) -> list[tuple[str, list[str]]]:
    """(metric, one cell per size): the table, metrics down, sizes across."""

    def row(name: str, cell: Callable[[SizeResult], str]) -> tuple[str, list[str]]:
        return name, [cell(r) for r in results]

    def roofline(r: SizeResult, its: float | None) -> str:
        return fmt(None if its is None else its * r.flops_analytic / peak * 100, ".1f", "%")

    def ratio(its: float, r: SizeResult) -> str:
        return fmt(None if not r.torch_its else its / r.torch_its, ".2f", "x")

    def gemm(r: SizeResult, key: str) -> str:
        value = r.gemm.get(key)
        return "n/a" if value is None else f"{value / 1e9:.1f} ({value / peak * 100:.0f}%)"

    return [
        row("load average (1 min) before", lambda r: f"{r.load_before:.2f}"),
        row(
            "CPU obtained: sweep / chunks alone / PyTorch (% of all cores)",
            lambda r: (
                f"{fmt(r.sweep_cpu_share * 100, '.0f')} / "
                f"{fmt(r.pure_cpu_share * 100, '.0f')} / "
                + fmt(None if r.torch_best is None else r.torch_best[1] * 100, ".0f")
            ),
        ),
        row("steps x runs (log_every)", lambda r: f"{r.size.steps} x 9 ({r.size.log_every})"),
        row("sweep wall, first sweep (s)", lambda r: fmt(r.sweep_wall_s)),
        row(
            "**throughput, steady (run-it/s)** [first chunk subtracted]",
            lambda r: f"**{r.steady_its:.2f}**",
        ),
        row(
            "throughput, second identical sweep (run-it/s)",
            lambda r: fmt(r.second_its, ".2f") if r.second_its else "not run",
        ),
        row(
            "throughput, training chunks alone (run-it/s)",
            lambda r: fmt(r.chunk_its / r.train_only_chunk_s, ".2f"),
        ),
        row(
            "compile: first chunk minus steady chunk (s)",
            lambda r: fmt(r.compile_excess_s) + (" (noise)" if r.compile_excess_s < 0 else ""),
        ),
        row(
            "compile: direct lower + compile of the chunk (s)",
            lambda r: f"{fmt(r.lower_direct_s)} + {fmt(r.compile_direct_s)}",
        ),
        row("XLA memory of the chunk program (MiB)", lambda r: fmt(r.xla_memory_mib, ".0f")),
        row("peak RSS of the process so far (MiB)", lambda r: fmt(r.maxrss_mib, ".0f")),
        row("FLOP / iteration, analytic (GFLOP)", lambda r: fmt(r.flops_analytic / 1e9, ".4f")),
        row(
            "FLOP / iteration, XLA cost analysis (GFLOP)",
            lambda r: fmt(None if r.flops_xla is None else r.flops_xla / 1e9, ".4f"),
        ),
        row(
            "achieved GFLOP/s (steady sweep)",
            lambda r: fmt(r.steady_its * r.flops_analytic / 1e9),
        ),
        row("**% of matmul roofline (steady sweep)**", lambda r: roofline(r, r.steady_its)),
        row(
            "% of roofline, training chunks alone",
            lambda r: roofline(r, r.chunk_its / r.train_only_chunk_s),
        ),
        row("GEMM ceiling: batched fwd GFLOP/s (% peak)", lambda r: gemm(r, "batched forward")),
        row(
            "GEMM ceiling: batched weight-grad GFLOP/s (% peak)",
            lambda r: gemm(r, "batched weight-grad"),
        ),
        row("GEMM ceiling: one run's fwd GFLOP/s (% peak)", lambda r: gemm(r, "one run's forward")),
        row("steady sweep seconds per chunk", lambda r: fmt(r.steady_chunk_s, ".3f")),
        row(
            "chunk alone, no host work (s) [n chunks]",
            lambda r: f"{r.pure_chunk_s:.3f} [{r.pure_chunks}]",
        ),
        row("  of which on-device evaluation (s)", lambda r: fmt(r.eval_s, ".3f")),
        row(
            "  evaluation FLOP per run per chunk, XLA (GFLOP)",
            lambda r: fmt(None if r.eval_flops_xla is None else r.eval_flops_xla / 1e9, ".3f"),
        ),
        row("host exact W1 for 9 runs, alone (s)", lambda r: fmt(r.ot_s, ".3f")),
        row(
            "**diagnostics share of sweep time**",
            lambda r: fmt(r.diagnostics_share * 100, ".1f", "%"),
        ),
        row(
            "  on-device evaluation share",
            lambda r: fmt((r.eval_s or 0) / r.steady_chunk_s * 100, ".1f", "%"),
        ),
        row(
            "  host share (OT, CSV, transfers not hidden)",
            lambda r: fmt((1 - r.pure_chunk_s / r.steady_chunk_s) * 100, ".1f", "%"),
        ),
        *(
            row(
                f"PyTorch eager loop, {n} thread(s) (run-it/s)",
                lambda r, n=n: fmt(r.torch_rates[n][0], ".2f") if r.torch_rates else "n/a",
            )
            for n in sorted({1, os.cpu_count() or 1})
        ),
        row("**wgan steady / PyTorch (its best thread count)**", lambda r: ratio(r.steady_its, r)),
        row(
            "  the same, each divided by its CPU share (contention-normalised)",
            lambda r: fmt(
                r.steady_its / r.sweep_cpu_share / (r.torch_best[0] / r.torch_best[1])
                if r.torch_best
                else None,
                ".2f",
                "x",
            ),
        ),
        row(
            "wgan training chunks alone / PyTorch",
            lambda r: ratio(r.chunk_its / r.train_only_chunk_s, r),
        ),
    ]


def markdown_table(results: list[SizeResult], peak: float) -> str:
    header = "| metric | " + " | ".join(r.size.label for r in results) + " |"
    rule = "|---|" + "---:|" * len(results)
    body = [f"| {name} | " + " | ".join(cells) + " |" for name, cells in table_rows(results, peak)]
    return "\n".join([header, rule, *body])


def targets_table(results: list[SizeResult], peak: float) -> str:
    """The issue's targets, each with the value measured in this run and pass / miss."""
    by_name = {r.size.name: r for r in results}
    lines = ["| target | measured | met |", "|---|---:|:---:|"]

    def add(label: str, value: float | None, goal: float, unit: str) -> None:
        if value is None:
            lines.append(f"| {label} | n/a | - |")
            return
        shown = f"{value * 100:.1f}%" if unit == "%" else f"{value:.2f}x"
        lines.append(f"| {label} | {shown} | {'yes' if value >= goal else 'no'} |")

    if "default" in by_name:
        r = by_name["default"]
        add(
            "default size >= 75% of roofline",
            r.steady_its * r.flops_analytic / peak,
            TARGET_DEFAULT_ROOFLINE,
            "%",
        )
    if "small" in by_name:
        r = by_name["small"]
        add(
            "small size >= 60% of roofline",
            r.steady_its * r.flops_analytic / peak,
            TARGET_SMALL_ROOFLINE,
            "%",
        )
        add(
            "small size >= 6x the PyTorch loop",
            r.steady_its / r.torch_its if r.torch_its else None,
            TARGET_SMALL_VS_TORCH,
            "x",
        )
    for r in results:
        share = r.diagnostics_share
        lines.append(
            f"| {r.size.name}: diagnostics <= 10% of sweep time | {share * 100:.1f}% | "
            f"{'yes' if share <= TARGET_DIAGNOSTICS else 'no'} |"
        )
    return "\n".join(lines)


def header_lines(
    args: argparse.Namespace, load_start: tuple[float, float, float], peak: float
) -> list[str]:
    return [
        "# Sweep throughput",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.platform()}",
        "- load average at start (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in load_start),
        f"- jax {jax.__version__}, backend {jax.default_backend()}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        f"- fp32 matmul peak (jitted 2048 x 2048, best of 10, best of 3 samples): "
        f"{peak / 1e9:.1f} GFLOP/s",
        f"- sweep: c {CS} x seeds {SEEDS}, n_critic {N_CRITIC}, swissroll, diagnostics on"
        + (" (QUICK: tiny steps and log_every, numbers are not meaningful)" if args.quick else ""),
    ]


# ---------------------------------------------------------------------------------------------


def sizes_for(args: argparse.Namespace) -> list[Size]:
    """Small first: ru_maxrss only grows, so the small size's peak is not the default's."""
    if args.quick:
        return [Size("small", 128, 64, 15, 5, True), Size("default", 512, 256, 10, 5, False)]
    return [
        Size("small", 128, 64, args.small_steps, 50, True),
        Size("default", 512, 256, args.default_steps, 50, False),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny steps: check the script runs")
    parser.add_argument("--out", type=Path, help="markdown file (default: WORKDIR/table.md)")
    parser.add_argument("--workdir", type=Path, help="sweep folders (default: a new temp dir)")
    parser.add_argument("--default-steps", type=int, default=200, help="multiple of 50, >= 100")
    parser.add_argument("--small-steps", type=int, default=1000, help="multiple of 50, >= 100")
    parser.add_argument("--torch-seconds", type=float, default=15.0, help="per size")
    args = parser.parse_args(argv)
    for steps in (args.default_steps, args.small_steps):
        if steps < 100 or steps % 50:
            parser.error("steps must be a multiple of 50 and at least 100 (two chunks)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wgan-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or workdir / "table.md"
    load_start = os.getloadavg()
    log(f"load average {load_start}; work in {workdir}")

    repeats = 3 if args.quick else 10
    peaks = [matmul_peak(repeats=repeats)]
    log(f"fp32 matmul peak {peaks[-1] / 1e9:.1f} GFLOP/s")
    results = []
    for size in sizes_for(args):
        results.append(measure_size(size, workdir, args.quick))
        peaks.append(matmul_peak(repeats=repeats))
        log(f"fp32 matmul peak {peaks[-1] / 1e9:.1f} GFLOP/s")
    peak = max(peaks)
    for r in results:
        log(f"PyTorch peer, {r.size.label}: load {load_average():.2f}")
        seconds = 2.0 if args.quick else args.torch_seconds
        r.torch_rates = torch_peer(r.size, seconds)
        if r.torch_rates is None:
            log("  PyTorch peer skipped: torch is not installed")

    notes = [
        "- matmul peak samples (start, after each size; the table uses the largest): "
        + ", ".join(f"{p / 1e9:.1f}" for p in peaks)
        + " GFLOP/s",
        "- PyTorch peer: "
        + (
            "skipped, torch is not installed (`pip install torch`)"
            if results[0].torch_rates is None
            else f"torch {_torch_version()}, eager, one run; its thread count (torch's default "
            "is all cores) matters: OpenMP barriers stall when the machine is oversubscribed"
        ),
    ]
    notes.append(f"- load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    text = "\n".join(
        [
            *header_lines(args, load_start, peak),
            "",
            markdown_table(results, peak),
            "",
            "## Targets",
            "",
            targets_table(results, peak),
            "",
            *notes,
            "",
        ]
    )
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
