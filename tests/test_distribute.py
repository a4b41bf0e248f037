"""Multi-worker training: the cluster options, each worker's share of the data, the local launcher, and real
`MultiWorkerMirroredStrategy` runs of `fine_tune` on two loopback workers (parity with one process, a worker
killed mid-training and the run resumed)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.cli import main
from keras_transfer.distribute import sharding
from keras_transfer.distribute.cluster import TF_CONFIG, cluster_from_environment, parse_worker_hosts, worker_cluster
from keras_transfer.distribute.launcher import RESTART_ENVIRONMENT, LocalCluster

PROGRAM = os.path.join(os.path.dirname(__file__), "programs", "fine_tune_worker.py")
# Weights of two workers and of one process agree to float rounding (summed in another order).
WEIGHT_TOLERANCE = 1e-5


# --- the cluster -------------------------------------------------------------------------------------------


def test_worker_hosts_and_task_index_make_a_tf_config():
    cluster = worker_cluster("10.0.0.1:2222, 10.0.0.2:2222", 1)
    assert cluster.tf_config() == {
        "cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert cluster.num_workers == 2 and not cluster.is_chief and cluster.address == "10.0.0.2:2222"
    assert worker_cluster(["a:1", "b:2"], 0).is_chief


@pytest.mark.parametrize(
    "hosts, index, words",
    [
        ("", 0, "names no worker"),
        ("localhost", 0, "is not host:port"),
        ("localhost:99999", 0, "is not host:port"),
        ("a:1,a:1", 0, "twice"),
        ("a:1,b:2", 2, "give 0 to 1"),
        ("a:1,b:2", "x", "whole number"),
    ],
)
def test_bad_worker_hosts_say_what_is_wrong(hosts, index, words):
    with pytest.raises(ValueError, match=words):
        worker_cluster(hosts, index)


def test_tf_config_is_read_and_checked():
    config = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 1}}
    cluster = cluster_from_environment({TF_CONFIG: json.dumps(config)})
    assert cluster.num_workers == 3 and not cluster.is_chief and cluster.address == "w:2"
    assert cluster_from_environment({}) is None
    with pytest.raises(ValueError, match="not a cluster description"):
        cluster_from_environment({TF_CONFIG: "{not json"})
    with pytest.raises(ValueError, match="does not have"):
        cluster_from_environment({TF_CONFIG: json.dumps({**config, "task": {"type": "worker", "index": 5}})})
    with pytest.raises(ValueError, match="task types"):
        cluster_from_environment(
            {TF_CONFIG: json.dumps({"cluster": {"ps": ["p:1"]}, "task": {"type": "ps", "index": 0}})}
        )
    assert parse_worker_hosts("h:1,h:2") == ["h:1", "h:2"]


def test_outside_multi_worker_training_every_process_is_the_chief():
    assert kt.distribute.is_chief() and kt.distribute.worker_count() == 1 and kt.distribute.worker_index() == 0
    with pytest.raises(ValueError, match="No cluster to join"):
        kt.distribute.multi_worker_strategy()
    with pytest.raises(ValueError, match="needs task_index"):
        kt.distribute.multi_worker_strategy(["a:1", "b:2"])


# --- each worker's share -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_examples, batch_size, workers", [(48, 8, 2), (50, 8, 2), (31, 6, 3), (5, 8, 2)])
def test_the_workers_shares_add_up_to_each_global_batch(num_examples, batch_size, workers):
    elements = tf.data.Dataset.range(num_examples)
    single = [batch.numpy().tolist() for batch in elements.batch(batch_size)]
    parts = []
    for index in range(workers):
        kept = sharding.keep_for_worker(workers, index, batch_size)(elements)
        rows = sharding.rows_for_worker(batch_size, workers, index)
        part = [batch.numpy().tolist() for batch in kept.batch(rows)] if rows else []
        assert sum(len(batch) for batch in part) == sharding.kept_count(num_examples, workers, index, batch_size)
        parts.append(part)
        # Row slices of each batch (any dataset) are the same share.
        sliced = [
            batch.numpy().tolist() for batch in sharding.shard_batches(elements.batch(batch_size), workers, index)
        ]
        assert [batch for batch in sliced if batch] == part
    for step, batch in enumerate(single):
        together = sorted(value for part in parts if step < len(part) for value in part[step])
        assert together == batch
    # The rows gathered back in worker order, interleaved: the single dataset's order.
    shares = [np.concatenate(part) if part else np.zeros(0, np.int64) for part in parts]
    assert sharding.interleave_rows(shares, workers, batch_size).tolist() == sum(single, [])


def test_an_image_folder_shards_its_files_before_decoding_and_shuffles_alike(make_image_folder):
    root = make_image_folder(per_class=10, size=16)
    train = kt.data.image_folder(root, image_size=16, batch_size=4, seed=5)
    assert callable(train.for_worker)
    parts = [sharding.for_worker(train, 2, index) for index in range(2)]
    assert sharding.for_worker(train, 2, 0) is parts[0]  # one per worker: its shuffling goes on across fits
    assert [part.num_examples for part in parts] == [10, 10]
    for _ in range(2):  # two epochs, each its own order, the same split
        single = [np.asarray(images).reshape(len(images), -1).mean(axis=1) for images, _ in train]
        shares = [[np.asarray(images).reshape(len(images), -1).mean(axis=1) for images, _ in part] for part in parts]
        for step, batch in enumerate(single):
            assert sorted(np.concatenate([share[step] for share in shares])) == pytest.approx(sorted(batch))


def test_outside_multi_worker_training_nothing_is_split():
    dataset = tf.data.Dataset.range(6).batch(2)
    strategy = tf.distribute.get_strategy()
    assert sharding.distribute(dataset, strategy) is dataset
    assert [part.tolist() for part in sharding.all_gather_rows(np.arange(3), strategy)] == [[0, 1, 2]]


def test_keras_fixes_leave_other_strategies_to_keras(mirrored_strategy):
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from keras_transfer.distribute import keras_fixes

    keras_fixes.install()
    keras_fixes.install()  # twice changes nothing
    assert tf_trainer.reduce_per_replica is keras_fixes._reduce_per_replica
    assert not keras_fixes.in_multi_worker_mode(mirrored_strategy)
    values = mirrored_strategy.run(lambda: tf.constant([1.0, 3.0]))
    reduced = tf_trainer.reduce_per_replica(values, mirrored_strategy, "mean")
    assert np.asarray(reduced).tolist() == [1.0, 3.0]


# --- the launcher --------------------------------------------------------------------------------------------


def _python(code):
    return [sys.executable, "-c", code]


def test_launcher_gives_every_worker_its_tf_config_and_waits_for_all(tmp_path):
    code = (
        "import json, os, sys; config = json.loads(os.environ['TF_CONFIG']); "
        f"open(os.path.join({str(tmp_path)!r}, str(config['task']['index'])), 'w').write(json.dumps(config))"
    )
    cluster = LocalCluster(_python(code), 3, log_dir=str(tmp_path / "logs"))
    assert cluster.run() == 0 and cluster.restarts == 0
    configs = [json.loads((tmp_path / str(index)).read_text()) for index in range(3)]
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(host.startswith("localhost:") for host in hosts)
    assert [config["task"]["index"] for config in configs] == [0, 1, 2]
    assert all(config["cluster"]["worker"] == hosts for config in configs)


def test_launcher_restarts_all_workers_when_one_fails(tmp_path):
    # Worker 1 fails on the first start only; worker 0 would wait forever without the restart.
    code = (
        "import json, os, sys, time; index = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
        f"restart = os.environ.get({RESTART_ENVIRONMENT!r}); "
        f"open(os.path.join({str(tmp_path)!r}, f'{{index}}-{{restart}}'), 'w').close(); "
        "sys.exit(3) if index == 1 and not restart else None; "
        "time.sleep(600) if not restart else None"
    )
    said = []
    cluster = LocalCluster(_python(code), 2, max_restarts=1, log_dir=str(tmp_path / "logs"), announce=said.append)
    started = time.perf_counter()
    assert cluster.run() == 0
    assert time.perf_counter() - started < 60
    assert cluster.restarts == 1 and cluster.failures == [(1, 3)]
    assert sorted(name for name in os.listdir(tmp_path) if "-" in name) == ["0-1", "0-None", "1-1", "1-None"]
    assert said == ["Worker 1 ended with exit status 3: restarting all 2 workers (restart 1 of 1)."]


def test_launcher_gives_up_after_its_restarts_with_the_failing_status(tmp_path):
    cluster = LocalCluster(_python("import sys; sys.exit(4)"), 2, max_restarts=1, announce=lambda line: None)
    assert cluster.run() == 4 and cluster.restarts == 1


def test_launch_command_reports_a_failing_worker_with_its_log(tmp_path, capsys):
    code = (
        "import json, os, sys; print('worker says why'); "
        "sys.exit(json.loads(os.environ['TF_CONFIG'])['task']['index'] * 5)"
    )
    status = main(["launch", "--workers", "2", "--log-dir", str(tmp_path), "--", *_python(code)])
    captured = capsys.readouterr()
    assert status == 5
    assert "worker 1 ended with exit status 5" in captured.err and "worker says why" in captured.err


def test_launch_without_a_command_is_a_user_error(capsys):
    assert main(["launch", "--workers", "2"]) == 2
    assert "after --" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, words",
    [
        (["--worker-hosts", "a:1,b:2"], "needs --task-index"),
        (["--task-index", "0"], "needs --worker-hosts"),
        (["--worker-hosts", "a:1,b:2", "--task-index", "2"], "give 0 to 1"),
        (["--worker-hosts", "a:1,b:2", "--task-index", "1", "--lr-find"], "--lr-find runs on one process"),
    ],
)
def test_train_refuses_bad_worker_options_before_any_work(make_image_folder, tmp_path, capsys, options, words):
    root = make_image_folder()
    argv = ["train", root, "--backbone", "mobilenet_v2", "--weights", "none", "--output", str(tmp_path / "run")]
    assert main([*argv, *options]) == 2
    assert words in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "run.partial")


# --- two real workers on loopback ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_images(tmp_path_factory):
    """64 images (48 training, 16 validation): every batch of 8 full, so that the split is exact."""
    from PIL import Image

    root = tmp_path_factory.mktemp("worker_images")
    rng = np.random.default_rng(0)
    for index, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir()
        for image in range(32):
            pixels = np.clip(rng.normal(60 + 120 * index, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{image}.png")
    return str(root)


def _single_process(images, out, *options):
    environment = {key: value for key, value in os.environ.items() if key != TF_CONFIG}
    subprocess.run([sys.executable, PROGRAM, images, str(out), *options], check=True, env=environment, timeout=300)


def _weights(folder):
    with np.load(os.path.join(folder, "weights.npz")) as saved:
        return [saved[name] for name in saved.files]


def _assert_same_run(single, workers):
    for one, other in zip(_weights(single), _weights(workers), strict=True):
        np.testing.assert_allclose(one, other, atol=WEIGHT_TOLERANCE)
    accuracies = [json.loads((workers / f"worker-{index}.json").read_text()) for index in range(2)]
    alone = json.loads((single / "worker-0.json").read_text())
    assert [entry["workers"] for entry in accuracies] == [2, 2] and alone["workers"] == 1
    assert accuracies[0]["accuracy"] == accuracies[1]["accuracy"] == alone["accuracy"]


@pytest.mark.parametrize("cache", [False, True], ids=["whole-network", "cached-features"])
def test_two_workers_fine_tune_as_one_process_does(worker_images, tmp_path, cache):
    options = ["--no-shuffle", "--epochs", "2,1", *(["--cache"] if cache else [])]
    _single_process(worker_images, tmp_path / "single", *options)
    cluster = LocalCluster(
        [sys.executable, PROGRAM, worker_images, str(tmp_path / "workers"), *options],
        2,
        log_dir=str(tmp_path / "logs"),
    )
    assert cluster.run() == 0, (tmp_path / "logs" / "worker-1.log").read_text()[-3000:]
    _assert_same_run(tmp_path / "single", tmp_path / "workers")
    single_history = json.loads((tmp_path / "single" / "history.json").read_text())
    workers_history = json.loads((tmp_path / "workers" / "history.json").read_text())
    assert workers_history["loss"] == pytest.approx(single_history["loss"], abs=1e-5)


def test_two_workers_fine_tune_a_text_classifier_in_step(tmp_path):
    # Sentences split per worker before tokenizing, batches bucketed by length on each worker.
    out = tmp_path / "workers"
    cluster = LocalCluster([sys.executable, PROGRAM, "text", str(out), "--epochs", "1,1"], 2, log_dir=str(tmp_path))
    assert cluster.run() == 0, (tmp_path / "worker-1.log").read_text()[-3000:]
    with np.load(out / "weights-0.npz") as first, np.load(out / "weights-1.npz") as second:
        assert len(first.files) == len(second.files) > 10
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name])
    reports = [json.loads((out / f"worker-{index}.json").read_text()) for index in range(2)]
    assert reports[0] == reports[1] and reports[0]["workers"] == 2


def test_a_killed_worker_is_restarted_and_the_run_resumes_from_its_backup(worker_images, tmp_path):
    options = ["--no-shuffle", "--epochs", "4,1"]
    _single_process(worker_images, tmp_path / "single", *options)
    backup = tmp_path / "backup"
    logs = tmp_path / "logs"
    cluster = LocalCluster(
        [sys.executable, PROGRAM, worker_images, str(tmp_path / "workers"), *options, "--backup", str(backup)]
        + ["--slow-epochs", "1.5"],
        2,
        max_restarts=1,
        log_dir=str(logs),
        announce=lambda line: None,
    )
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("status", cluster.run()))
    runner.start()
    state = backup / "head" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        time.sleep(0.2)
    assert state.exists(), "the head phase never backed up an epoch"
    os.kill(int((logs / "worker-1.pid").read_text()), signal.SIGKILL)
    runner.join(timeout=300)
    assert result.get("status") == 0, (logs / "worker-1.log").read_text()[-3000:]
    assert cluster.restarts == 1 and cluster.failures == [(1, -signal.SIGKILL)]
    _assert_same_run(tmp_path / "single", tmp_path / "workers")
    history = json.loads((tmp_path / "workers" / "history.json").read_text())
    assert len(history["loss"]) == 5  # every epoch of both phases, those before the kill included


def test_launch_trains_with_the_cli_on_two_workers(worker_images, tmp_path, capsys):
    output = tmp_path / "run"
    status = main(
        ["launch", "--workers", "2", "--log-dir", str(tmp_path / "logs"), "--"]
        + [sys.executable, "-m", "keras_transfer.cli", "train", worker_images, "--val-split", "0.25"]
        + ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--batch-size", "8"]
        + ["--head-epochs", "1", "--finetune-epochs", "1", "--output", str(output)]
    )
    assert status == 0, (tmp_path / "logs" / "worker-1.log").read_text()[-3000:]
    assert "all 2 workers finished" in capsys.readouterr().out
    report = json.loads((output / "report.json").read_text())
    assert report["workers"] == 2 and report["val_examples"] == 16
    assert sorted(os.listdir(output)) == [
        ".keras-transfer.json",
        "confusion_matrix.png",
        "model.keras",
        "report.json",
        "training_curves.png",
    ]
    worker_log = (tmp_path / "logs" / "worker-1.log").read_text()
    assert "Worker 1 finished (2 epochs in step with the others); the chief writes the outputs." in worker_log
    assert not os.path.exists(str(output) + ".partial")
    model = keras.saving.load_model(str(output / "model.keras"))
    assert model.class_names == ["cats", "dogs"]
