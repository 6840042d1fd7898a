"""mnistctl: follow and check a training run of the mnist-train chart on Kubernetes.

    python -m mnistctl status|logs|wait|check|scaling      (console script: mnistctl)

The operations tool, apart from the training library (model/): it reads
Kubernetes objects, pod logs and the model directory, and never imports
TensorFlow. One module per concern:

    cli.py          the command line (argparse) and the exit codes it returns
    commands.py     what each subcommand does
    kube.py         the API layer: the only module that imports `kubernetes`
    release.py      the release's objects: the chart's labels and selectors
    objects.py      pods, Jobs, JobSets, TFJobs and Services as the facts that matter
    progress.py     what the trainer's and evaluator's logs say (model/log_lines.py patterns)
    model_dir.py    what the trainer left in the model dir (model/layout.py names)
    status.py       the whole release: collect, summarize, verdict, render
    exit_codes.py   what a pod's exit code means (model/errors.py's contract)
"""
