"""model/run_identity.py: what a run is, recorded once; what a resume may and may not change.

Real files and real training (in process, and `python -m model train`
processes for the worker-count change); gs:// against gcp-storage-emulator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil

import numpy as np
import pytest

from model import log_lines, run_identity
from model.config import preset
from model.errors import EXIT_CONFIG_ERROR, ConfigError
from tests.multiworker import Cluster
from tests.test_gcs import bucket, client, emulator  # noqa: F401 - pytest fixtures

IMAGES = np.arange(2 * 784, dtype=np.uint8).reshape(2, 784)
LABELS = np.array([3, 7], dtype=np.uint8)


@dataclasses.dataclass
class FakeTrainConfig:
    """The fields of model.train.TrainConfig that `RunIdentity.of` reads (no TensorFlow)."""

    model: str = "mlp"
    hparams: object = dataclasses.field(default_factory=lambda: preset("default", "mlp"))
    compute_dtype: str = "float32"
    all_reduce_dtype: str = "float32"
    gradient_exchange: str = "auto"


def identity(num_workers=1, images=IMAGES, **changes) -> run_identity.RunIdentity:
    hparam_names = {f.name for f in dataclasses.fields(preset("default", "mlp"))}
    hparams = dataclasses.replace(preset("default", "mlp"),
                                  **{k: v for k, v in changes.items() if k in hparam_names})
    config = FakeTrainConfig(hparams=hparams, **{k: v for k, v in changes.items()
                                                 if k not in hparam_names})
    return run_identity.RunIdentity.of(config, num_workers=num_workers,
                                       global_batch=hparams.batch_size * num_workers,
                                       train_images=images, train_labels=LABELS)


def messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- the identity

def test_the_run_id_follows_every_identity_field_but_not_max_steps_or_execution():
    base = identity()
    for same in (identity(max_steps=123), identity(compute_dtype="bfloat16"),
                 identity(all_reduce_dtype="bfloat16"), identity(gradient_exchange="all-reduce")):
        assert same.run_id == base.run_id
    changed = [identity(seed=1), identity(batch_size=50), identity(num_workers=2),
               identity(learning_rate_base=0.2), identity(momentum=0.5), identity(model="lenet5"),
               identity(images=IMAGES[::-1])]
    ids = {i.run_id for i in changed}
    assert base.run_id not in ids and len(ids) == len(changed)


def test_a_new_run_is_recorded_once_and_never_rewritten(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    record = run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)
    path = tmp_path / run_identity.RUN_CONFIG
    saved = path.read_bytes()
    on_disk = json.loads(saved)
    assert on_disk == record
    assert on_disk["model"] == "mlp" and on_disk["num_workers"] == 1 and on_disk["global_batch"] == 100
    assert "max_steps" not in on_disk["hparams"] and on_disk["created"]["max_steps"] == 100
    assert log_lines.RUN_NEW.search(messages(caplog))["run_id"] == identity().run_id
    # A resume with more steps: the same run; nothing is rewritten.
    assert run_identity.check_or_record(str(tmp_path), identity(max_steps=900), max_steps=900,
                                        write=True) == record
    assert path.read_bytes() == saved


def test_another_run_is_refused_naming_each_difference_and_what_to_do(tmp_path):
    run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)
    saved = (tmp_path / run_identity.RUN_CONFIG).read_bytes()
    with pytest.raises(run_identity.RunMismatch) as refused:
        run_identity.check_or_record(str(tmp_path), identity(num_workers=2, seed=7,
                                                             compute_dtype="bfloat16"),
                                     max_steps=100, write=True)
    message = str(refused.value)
    for part in ("hparams.seed: 0 → 7", "num_workers: 1 → 2", "global_batch: 100 → 200",
                 "storage.modelDirName",
                 f"delete {tmp_path} to replace this run", identity().run_id):
        assert part in message, message
    assert "batch_size" not in message and "compute_dtype" not in message  # only what defines it
    assert (tmp_path / run_identity.RUN_CONFIG).read_bytes() == saved
    assert isinstance(refused.value, ConfigError)  # exit 2


def test_other_training_data_is_another_run(tmp_path):
    run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)
    with pytest.raises(run_identity.RunMismatch, match=r"data_sha256: [0-9a-f]{12}… → [0-9a-f]{12}…"):
        run_identity.check_or_record(str(tmp_path), identity(images=IMAGES[::-1]), max_steps=100,
                                     write=True)


def test_non_chief_workers_compare_but_never_write(tmp_path):
    assert run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=False) is None
    assert list(tmp_path.iterdir()) == []
    run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)
    with pytest.raises(run_identity.RunMismatch):
        run_identity.check_or_record(str(tmp_path), identity(batch_size=10), max_steps=100, write=False)


def test_a_run_config_of_an_earlier_version_is_upgraded_once_if_it_matches(tmp_path, caplog):
    legacy = {"model": "mlp", "hparams": dataclasses.asdict(dataclasses.replace(
        preset("default", "mlp"), max_steps=300))}
    path = tmp_path / run_identity.RUN_CONFIG
    path.write_text(json.dumps(legacy))
    with pytest.raises(run_identity.RunMismatch, match="hparams.seed: 0 → 4"):
        run_identity.check_or_record(str(tmp_path), identity(seed=4), max_steps=400, write=True)
    assert json.loads(path.read_text()) == legacy
    record = run_identity.check_or_record(str(tmp_path), identity(num_workers=2), max_steps=400,
                                          write=True)
    assert record["format"] == run_identity.FORMAT and record["num_workers"] == 2
    assert record["created"]["upgraded_from"] == legacy
    assert json.loads(path.read_text()) == record
    assert "earlier version without the worker count" in messages(caplog)
    with pytest.raises(run_identity.RunMismatch, match="num_workers: 2 → 1"):
        run_identity.check_or_record(str(tmp_path), identity(), max_steps=400, write=True)


def test_a_damaged_run_config_is_a_config_error(tmp_path):
    (tmp_path / run_identity.RUN_CONFIG).write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="run_config.json is not valid JSON"):
        run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)


def test_the_identity_on_gcs(client, bucket):  # noqa: F811
    model_dir = f"gs://{bucket.name}/runs/a"
    run_identity.check_or_record(model_dir, identity(), max_steps=10, write=True, client=client)
    stored = json.loads(bucket.get_blob("runs/a/run_config.json").download_as_bytes())
    assert stored["run_id"] == identity().run_id and stored["model"] == "mlp"
    with pytest.raises(run_identity.RunMismatch, match="hparams.seed: 0 → 2"):
        run_identity.check_or_record(model_dir, identity(seed=2), max_steps=10, write=True,
                                     client=client)


# ---------------------------------------------------------------- training in process

def train_config(model_dir, max_steps, **changes):
    from model.train import TrainConfig

    hparams = dataclasses.replace(preset("default", "mlp"), max_steps=max_steps,
                                  **{k: v for k, v in changes.items() if k in ("seed", "batch_size")})
    return TrainConfig(model="mlp", model_dir=str(model_dir), hparams=hparams,
                       save_checkpoints_steps=10, log_every_steps=10, save_summaries_steps=10,
                       steps_per_loop=10, **{k: v for k, v in changes.items()
                                             if k not in ("seed", "batch_size")})


def train(model_dir, datasets, max_steps, **changes):
    import tensorflow as tf

    from model.train import train as run

    return run(train_config(model_dir, max_steps, **changes), strategy=tf.distribute.get_strategy(),
               datasets=datasets)


def snapshot(directory) -> dict:
    """Each file's content digest and mtime (digests, so a failure prints a readable diff)."""
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_more_steps_extend_the_run_with_one_info_line_and_no_warning(model_dir, mnist, caplog):
    caplog.set_level(logging.INFO)
    run_config = (model_dir / run_identity.RUN_CONFIG).read_bytes()
    result = train(model_dir, mnist, 40)
    assert (result.start_step, result.final_step) == (30, 40)
    match = log_lines.RUN_RESUMING.search(messages(caplog))
    assert match and match["from_step"] == "30" and match["max_steps"] == "40", messages(caplog)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert (model_dir / run_identity.RUN_CONFIG).read_bytes() == run_config
    assert not (model_dir / "lease.json").exists(), "the lease was not released"


def test_a_run_already_complete_at_its_max_steps_trains_nothing_and_writes_nothing(
        model_dir, mnist, caplog):
    caplog.set_level(logging.INFO)
    before = snapshot(model_dir)
    result = train(model_dir, mnist, 30)
    assert (result.start_step, result.final_step) == (30, 30)
    lines = messages(caplog)
    match = log_lines.ALREADY_COMPLETE.search(lines)
    assert match and (match["step"], match["max_steps"]) == ("30", "30"), lines
    assert not log_lines.TRAIN_START.search(lines) and "compiled" not in lines
    assert snapshot(model_dir) == before


def test_fewer_steps_than_done_is_complete_too(model_dir, mnist, caplog):
    caplog.set_level(logging.INFO)
    assert train(model_dir, mnist, 20).final_step == 30
    assert log_lines.ALREADY_COMPLETE.search(messages(caplog))["step"] == "30"


@pytest.mark.parametrize("change, difference", [
    ({"batch_size": 50}, "hparams.batch_size: 100 → 50"),
    ({"seed": 3}, "hparams.seed: 0 → 3"),
])
def test_a_resume_that_would_change_the_math_is_refused(model_dir, mnist, change, difference):
    before = snapshot(model_dir)
    with pytest.raises(run_identity.RunMismatch, match=difference):
        train(model_dir, mnist, 40, **change)
    assert snapshot(model_dir) == before


def test_a_resume_with_other_execution_settings_is_the_same_run_and_says_so(tmp_path, caplog):
    """Compute dtype, wire dtype and exchange change how the steps are computed,
    not what the run is: accepted, logged, and the record is not rewritten."""
    caplog.set_level(logging.INFO)
    run_identity.check_or_record(str(tmp_path), identity(), max_steps=100, write=True)
    saved = (tmp_path / run_identity.RUN_CONFIG).read_bytes()
    run_identity.check_or_record(str(tmp_path), identity(compute_dtype="bfloat16",
                                                         gradient_exchange="all-reduce"),
                                 max_steps=100, write=True)
    assert "compute_dtype: float32 → bfloat16; gradient_exchange: auto → all-reduce" in messages(caplog)
    assert (tmp_path / run_identity.RUN_CONFIG).read_bytes() == saved


# ---------------------------------------------------------------- another worker count

MLP_ARGS = ["--model", "mlp", "--save-checkpoints-steps", "50", "--log-every-steps", "50",
            "--steps-per-loop", "50"]


@pytest.mark.slow
def test_a_two_worker_run_resumed_on_one_worker_is_refused(two_worker_dir, tmp_path):
    """Defect 6: the data position (step x global batch) and the learning-rate
    schedule would silently shift; the resume is refused with what to do."""
    one = Cluster(tmp_path, workers=1, train_args=[*MLP_ARGS, "--max-steps", "200"])
    shutil.copytree(two_worker_dir, one.model_dir)  # the 2-worker run, finished at step 100
    before = snapshot(one.model_dir)
    try:
        (alone,) = one.start_workers(attempt=1)
        code = alone.wait(120)
    finally:
        one.stop_all()
    assert code == EXIT_CONFIG_ERROR, alone.output()[-2000:]
    error = log_lines.ERROR.search(alone.output())["message"]
    for part in ("num_workers: 2 → 1", "global_batch: 200 → 100", "storage.modelDirName"):
        assert part in error, error
    assert snapshot(one.model_dir) == before
    shutil.rmtree(tmp_path / "logs")
