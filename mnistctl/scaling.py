"""`mnistctl scaling`: the step time and scaling efficiency to expect before paying for a run.

A model, TF-free (it runs where the chart is installed from):

    step time = compute per worker (+ the factors plan's global-batch matmul)
              + the gradient exchange: bytes of the chosen plan (model/exchange_rule.py,
                the trainer's own rule) over ring collectives, 2 (n-1) steps for an
                all-reduce and n-1 for an all-gather, each step costing a per-message
                latency plus its bytes over the link's bandwidth

    efficiency = compute per worker / step time   (per-worker batch fixed: weak scaling;
                 the trainer exchanges after the whole backward pass, so nothing overlaps)

Hierarchical, as NCCL runs it on GPU nodes: inside a node (`gpus_per_node` GPUs) the
ring runs over NVLink; between nodes over the network, whose bandwidth is per node
(all of a node's GPUs share it). An all-reduce is a reduce-scatter over NVLink, an
all-reduce of each GPU's 1/k slice between the nodes (k rings in parallel over the
node's link), an all-gather over NVLink. On one machine (bench/scaling_model.py's
calibration on loopback) every worker is "in one node" and the link is loopback.

Assumptions (also beside the table in docs/performance.md): GPU compute per step is a JAX/XLA measurement
of LeNet-5 on one H200 (TensorFlow was not available there); links run at line rate
(NCCL reaches some 80-95% of it, so real exchanges are that much slower); a ring's
latency grows with the node count, where NCCL would switch to trees at hundreds of
nodes (so the model is pessimistic for small batches on many nodes).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from model.config import COMPUTE_DTYPE_AUTO, GRADIENT_EXCHANGES, NETWORK_NAMES
from model.exchange_rule import factors_worth_it
from model.precision import auto_compute_dtype

# Every trainable variable's shape, in the networks' order (model/networks.py;
# tests/test_scaling_model.py checks these against the TensorFlow networks).
VARIABLE_SHAPES = {
    "mlp": ((500,), (784, 500), (10,), (500, 10)),
    "lenet5": ((32,), (5, 5, 1, 32), (64,), (5, 5, 32, 64), (512,), (3136, 512), (10,), (512, 10)),
}
DENSE_WEIGHTS = {"mlp": ((784, 500), (500, 10)), "lenet5": ((3136, 512), (512, 10))}
WIRE_BYTES = {"float32": 4, "bfloat16": 2}

# LeNet-5 forward + backward + SGD step on one NVIDIA H200, ms per step by per-GPU batch.
# Copied from /work/shared/measurements/gpu_lenet_h200.json ("LeNet-5 (the tutorial's
# shapes) forward+backward+SGD update, one NVIDIA H200, JAX with XLA, steady state after
# warm-up; measured 2026-11-26. A yardstick for GPU step times: TensorFlow was not
# available on that machine."); tests/test_scaling_model.py checks the copy when the file
# is there. Keyed by compute dtype.
H200_LENET5_MS = {
    "float32": {100: 0.2811, 1000: 1.4535, 10000: 12.5989},
    "bfloat16": {100: 0.3996, 1000: 1.0114, 10000: 8.5951},
}
H200_SOURCE = "one H200, JAX/XLA, LeNet-5 fwd+bwd+SGD (shared/measurements/gpu_lenet_h200.json)"

# Assumed GPU-cluster constants (stated in docs/performance.md): NVLink 4 on H200 moves
# 450 GB/s per direction per GPU; NCCL's small-message cost is a few microseconds
# per ring step inside a node and some 10 us over RDMA between nodes; FP32
# matmul on an H200 (the factors plan's extra multiply) at 50 TFLOP/s of its 67 peak.
NVLINK_GBYTES_PER_S = 450.0
NVLINK_LATENCY_S = 3e-6
NETWORK_LATENCY_S = 10e-6
GPU_MATMUL_FLOPS = 50e12
GPUS_PER_NODE = 8

EFFICIENCY_GOAL = 0.8
CANDIDATE_BATCHES = (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
MNIST_TRAIN_IMAGES = 55000


def parameter_count(network: str) -> int:
    return sum(math.prod(shape) for shape in VARIABLE_SHAPES[network])


@dataclasses.dataclass(frozen=True)
class Link:
    """One hop of a ring: bytes/s and seconds per message."""

    bytes_per_s: float
    latency_s: float

    def step(self, nbytes: float) -> float:
        return self.latency_s + nbytes / self.bytes_per_s


@dataclasses.dataclass(frozen=True)
class Cluster:
    """`workers` replicas (GPUs, or CPU processes), `per_node` to a node."""

    workers: int
    per_node: int
    intra: Link  # NVLink (or loopback on one machine)
    inter: Link | None = None  # the node's network link, shared by its replicas

    @property
    def nodes(self) -> int:
        return math.ceil(self.workers / self.per_node)

    @property
    def local(self) -> int:
        return min(self.workers, self.per_node)

    def all_reduce(self, nbytes: float) -> float:
        """Seconds for a hierarchical ring all-reduce of `nbytes` per replica."""
        k, m = self.local, self.nodes
        t = 2 * (k - 1) * self.intra.step(nbytes / k) if k > 1 else 0.0
        if m > 1:
            # k rings in parallel (one per 1/k slice) share the node's link.
            t += 2 * (m - 1) * (self.inter.latency_s + nbytes / m / self.inter.bytes_per_s)
        return t

    def all_gather(self, nbytes: float) -> float:
        """Seconds for every replica to receive every other's `nbytes`."""
        k, m = self.local, self.nodes
        t = (k - 1) * self.intra.step(nbytes) if k > 1 else 0.0
        if m > 1:
            # Each node's k blocks cross every other node's link once, then spread over NVLink.
            t += (m - 1) * (self.inter.latency_s + k * nbytes / self.inter.bytes_per_s)
            t += (self.workers - k) * nbytes / self.intra.bytes_per_s
        return t


@dataclasses.dataclass(frozen=True)
class Exchange:
    """What one step's gradient exchange moves per replica, in numbers (not bytes)."""

    factored: tuple[tuple[int, int], ...]  # (fan_in, fan_out) of the gathered layers
    gathered: int  # numbers all-gathered per replica (factors, + the rest when one collective)
    reduced: int  # numbers all-reduced per replica
    extra_flops: float  # the global-batch matmul of the factored layers beyond the local one

    def describe(self) -> str:
        if not self.factored:
            return "all-reduce"
        return "factors + all-reduce" if self.reduced else "factors (one all-gather)"


def exchange_for(network: str, rows: int, replicas: int, plan: str = "auto") -> Exchange:
    """The trainer's plan (model/gradient_exchange.py) for `rows` examples per replica."""
    if plan not in GRADIENT_EXCHANGES:
        raise ValueError(f"gradient exchange must be one of {', '.join(GRADIENT_EXCHANGES)}, got {plan!r}")
    total = parameter_count(network)
    if replicas == 1:
        return Exchange((), 0, 0, 0.0)
    factored = tuple(w for w in DENSE_WEIGHTS[network]
                     if plan == "factors" or (plan == "auto" and factors_worth_it(*w, rows, replicas)))
    factors = rows * sum(a + b for a, b in factored)
    rest = total - sum(a * b for a, b in factored)
    extra = 2.0 * (replicas - 1) * rows * sum(a * b for a, b in factored)
    if factored and replicas == 2:  # the rest rides in the same all-gather
        return Exchange(factored, factors + rest, 0, extra)
    return Exchange(factored, factors, rest, extra)


@dataclasses.dataclass(frozen=True)
class Prediction:
    compute_s: float
    extra_compute_s: float
    exchange_s: float
    plan: str

    @property
    def step_s(self) -> float:
        return self.compute_s + self.extra_compute_s + self.exchange_s

    @property
    def efficiency(self) -> float:
        return self.compute_s / self.step_s


def predict(network: str, rows: int, cluster: Cluster, compute_s: float, *, plan: str = "auto",
            wire: str = "float32", matmul_flops: float = GPU_MATMUL_FLOPS) -> Prediction:
    """Step time of `cluster.workers` replicas whose own step (no exchange) takes `compute_s`."""
    ex = exchange_for(network, rows, cluster.workers, plan)
    size = WIRE_BYTES[wire]
    exchange = ((cluster.all_gather(ex.gathered * size) if ex.gathered else 0.0)
                + (cluster.all_reduce(ex.reduced * size) if ex.reduced else 0.0))
    return Prediction(compute_s, ex.extra_flops / matmul_flops, exchange, ex.describe())


def h200_step_s(batch: int, compute: str = "float32") -> float:
    """LeNet-5 seconds per step on one H200: log-log interpolation between the measured
    batches, linear in the batch beyond 10,000, the batch-100 time below 100 (launch-bound).
    `auto` is what model/precision.py makes of it on a GPU worker (LeNet-5: float32)."""
    if compute == COMPUTE_DTYPE_AUTO:
        compute = auto_compute_dtype("lenet5", gpu=True)
    table = sorted(H200_LENET5_MS[compute].items())
    if batch <= table[0][0]:
        return table[0][1] / 1000
    for (b0, t0), (b1, t1) in zip(table, table[1:]):
        if batch <= b1:
            f = math.log(batch / b0) / math.log(b1 / b0)
            return math.exp(math.log(t0) + f * math.log(t1 / t0)) / 1000
    b, t = table[-1]
    return t * batch / b / 1000


def gpu_cluster(gpus: int, link_gbps: float, gpus_per_node: int = GPUS_PER_NODE,
                network_latency_s: float = NETWORK_LATENCY_S) -> Cluster:
    return Cluster(gpus, gpus_per_node, Link(NVLINK_GBYTES_PER_S * 1e9, NVLINK_LATENCY_S),
                   Link(link_gbps * 1e9 / 8, network_latency_s))


def predict_gpu(gpus: int, batch: int, link_gbps: float, *, network: str = "lenet5",
                plan: str = "auto", wire: str = "float32", compute: str = "float32",
                gpus_per_node: int = GPUS_PER_NODE) -> Prediction:
    if network != "lenet5":
        raise ValueError(f"GPU step times are measured for lenet5 only, got {network!r}")
    return predict(network, batch, gpu_cluster(gpus, link_gbps, gpus_per_node),
                   h200_step_s(batch, compute), plan=plan, wire=wire)


def batch_for_goal(gpus: int, link_gbps: float, goal: float = EFFICIENCY_GOAL, **kw) -> int | None:
    """The smallest candidate per-GPU batch whose efficiency reaches `goal` (None: none does)."""
    for batch in CANDIDATE_BATCHES:
        if predict_gpu(gpus, batch, link_gbps, **kw).efficiency >= goal:
            return batch
    return None


def advice(gpus: int, batch: int, link_gbps: float, gpus_per_worker: int = 1, **kw) -> list[str]:
    """What `mnistctl scaling` prints (and the chart's NOTES point to); `batch` per GPU."""
    p = predict_gpu(gpus, batch, link_gbps, **kw)
    per_node = kw.get("gpus_per_node", GPUS_PER_NODE)
    nodes = math.ceil(gpus / per_node)
    lines = [
        f"LeNet-5, {gpus} GPU(s) ({nodes} node(s) of up to {per_node}, NVLink inside, "
        f"{link_gbps:g} Gb/s between nodes), batch {batch} per GPU, "
        f"{kw.get('plan', 'auto')} exchange ({p.plan}), {kw.get('wire', 'float32')} on the wire:",
        f"  step {p.step_s * 1e3:.3f} ms = compute {p.compute_s * 1e3:.3f} ms"
        + (f" + factors matmul {p.extra_compute_s * 1e3:.3f} ms" if p.extra_compute_s else "")
        + f" + exchange {p.exchange_s * 1e3:.3f} ms",
        f"  expected scaling efficiency {p.efficiency:.2f} "
        f"({gpus * batch / p.step_s:,.0f} images/s for the whole job)",
    ]
    if p.efficiency < EFFICIENCY_GOAL:
        better = batch_for_goal(gpus, link_gbps, **kw)
        lines.append(f"  below {EFFICIENCY_GOAL}: " + (
            f"a per-GPU batch of {better} reaches it "
            f"({predict_gpu(gpus, better, link_gbps, **kw).efficiency:.2f}; "
            f"training.batchSize {better * gpus_per_worker})"
            if better else f"no per-GPU batch up to {CANDIDATE_BATCHES[-1]} reaches it; "
            "use fewer GPUs or a faster network"))
    if gpus * batch > MNIST_TRAIN_IMAGES:
        lines.append(f"  note: the global batch {gpus * batch:,} exceeds MNIST's "
                     f"{MNIST_TRAIN_IMAGES:,} training images (under one step per epoch)")
    lines.append(f"  (model: bench/scaling_model.py, mnistctl/scaling.py; compute: {H200_SOURCE})")
    return lines


def add_parser(sub) -> None:
    s = sub.add_parser("scaling", help="expected scaling efficiency of a GPU run (no cluster needed)")
    s.add_argument("--workers", type=int, required=True, help="trainer.workers")
    s.add_argument("--gpus-per-worker", type=int, default=1, help="GPUs each worker pod gets")
    s.add_argument("--batch", type=int, default=100,
                   help="batch per worker (training.batchSize), split over its GPUs (default: %(default)s)")
    s.add_argument("--network", choices=NETWORK_NAMES, default="lenet5")
    s.add_argument("--link-gbps", type=float, default=100.0,
                   help="network bandwidth per node between nodes, Gb/s (default: %(default)s)")
    s.add_argument("--gpus-per-node", type=int, default=GPUS_PER_NODE)
    s.add_argument("--exchange", choices=GRADIENT_EXCHANGES, default="auto", help="--gradient-exchange")
    s.add_argument("--wire", choices=tuple(WIRE_BYTES), default="float32", help="--all-reduce-dtype")
    s.add_argument("--compute", choices=(*H200_LENET5_MS, COMPUTE_DTYPE_AUTO), default="float32",
                   help="--compute-dtype; auto is float32 on GPU workers (model/precision.py)")


def cmd_scaling(args: argparse.Namespace) -> int:
    bad = [f"--{name.replace('_', '-')} must be a positive number, got {value}"
           for name, value in (("workers", args.workers), ("gpus_per_worker", args.gpus_per_worker),
                               ("batch", args.batch), ("link_gbps", args.link_gbps),
                               ("gpus_per_node", args.gpus_per_node)) if value <= 0]
    if args.network != "lenet5":
        bad.append(f"--network {args.network}: GPU step times are measured for lenet5 only")
    if bad:
        print("error: " + "; ".join(bad), file=sys.stderr)
        return 2
    if args.batch % args.gpus_per_worker:
        print(f"error: --batch {args.batch} must be a multiple of --gpus-per-worker "
              f"{args.gpus_per_worker} (each worker splits its batch over its GPUs)", file=sys.stderr)
        return 2
    gpus = args.workers * args.gpus_per_worker
    for line in advice(gpus, args.batch // args.gpus_per_worker, args.link_gbps,
                       gpus_per_worker=args.gpus_per_worker, plan=args.exchange, wire=args.wire,
                       compute=args.compute, gpus_per_node=args.gpus_per_node):
        print(line)
    return 0
