"""NOTES.txt's scaling advice: for GPU workers it prints the `mnistctl scaling` command
with the chosen values (the chart cannot run the model, nor know the network between
nodes), and that command parses and prints the model's efficiency for those values."""

from __future__ import annotations

from mnistctl import cli, scaling

from .test_notes import notes
from .test_notes_commands import commands, values_of


def _scaling_commands(text: str) -> list[list[str]]:
    return [c for c in commands(text) if c[:4] == ["python", "-m", "mnistctl", "scaling"]]


def test_gpu_notes_print_the_scaling_command_with_the_chosen_values(renderer, capsys):
    overrides = {"trainer": {"workers": 16}, "training": {"batchSize": 1000}}
    text = notes(renderer, "gpu", "--set", "trainer.workers=16", "--set", "training.batchSize=1000")
    values = values_of("gpu", overrides)
    (argv,) = _scaling_commands(text)
    args = cli.build_parser().parse_args(argv[3:])
    assert (args.workers, args.gpus_per_worker, args.batch) == (
        16, values["trainer"]["gpusPerWorker"], 1000)
    training = values["training"]
    assert (args.network, args.exchange, args.wire, args.compute) == (
        training["model"], training["gradientExchange"], training["allReduceDtype"],
        training["computeDtype"])
    assert f"{16 * values['trainer']['gpusPerWorker']} GPU(s) at batch 1000 per worker" in text

    assert args.gpus_per_node == 8
    assert f"{values['trainer']['gpusPerWorker']} when each worker gets a node of its own" in text

    assert cli.main(argv[3:]) == 0
    printed = capsys.readouterr().out
    gpus = args.workers * args.gpus_per_worker
    expected = scaling.predict_gpu(gpus, args.batch // args.gpus_per_worker, args.link_gbps,
                                   plan=args.exchange, wire=args.wire, compute=args.compute,
                                   gpus_per_node=args.gpus_per_node)
    assert f"expected scaling efficiency {expected.efficiency:.2f}" in printed


def test_cpu_notes_have_no_scaling_advice(renderer):
    assert not _scaling_commands(notes(renderer, "default"))
