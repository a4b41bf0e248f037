"""`fine_tune` with the strategies: schedules, progressive unfreezing, layer-wise rates."""

import pytest
from helpers import image_arrays, image_dataset, tiny_classifier

import keras_transfer as kt


def test_one_cycle_runs_one_cycle_per_phase_over_all_steps():
    train, _, _ = image_dataset(n=16, batch_size=8)
    model = tiny_classifier()
    model.fine_tune(
        train,
        head_epochs=1,
        finetune_epochs=2,
        unfreeze="all",
        schedule="one_cycle",
        finetune_learning_rate=1e-3,
        verbose=0,
    )
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, kt.OneCycle)
    assert schedule.total_steps == 2 * 2 and int(model.optimizer.iterations) == 4
    assert float(schedule(schedule.peak_step)) == pytest.approx(1e-3)


def test_warmup_cosine_with_cached_features_counts_the_cached_steps():
    images, labels = image_arrays(24)
    model = tiny_classifier()
    model.fine_tune(
        (images, labels),
        head_epochs=2,
        finetune_epochs=0,
        batch_size=8,
        cache_features=True,
        schedule="warmup_cosine",
        head_learning_rate=1e-2,
        verbose=0,
    )
    schedule = model.optimizer._learning_rate
    assert int(model.optimizer.iterations) == 6
    # 10% warmup of 6 steps, then cosine down to 0 at the last step.
    assert float(schedule(6)) == pytest.approx(0.0, abs=1e-9)


def test_progressive_unfreezing_opens_one_block_per_fine_tuning_epoch():
    train, _, _ = image_dataset(n=16, batch_size=8)
    model = tiny_classifier()
    unfreezing = kt.ProgressiveUnfreezing(
        blocks_per_epoch=1, blocks=[["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"]]
    )
    model.fine_tune(train, head_epochs=1, finetune_epochs=3, unfreeze=unfreezing, verbose=0)
    assert unfreezing.unfrozen_layers == {2: ["conv3"], 3: ["conv2"]}
    backbone = model.backbone
    assert [backbone.get_layer(n).trainable for n in ("conv1", "conv2", "conv3")] == [False, True, True]
    assert not any(backbone.get_layer(n).trainable for n in ("bn1", "bn2", "bn3"))


def test_layer_decay_gives_lower_blocks_lower_rates():
    train, _, _ = image_dataset(n=16, batch_size=8)
    model = tiny_classifier()
    model.fine_tune(train, head_epochs=0, finetune_epochs=1, unfreeze="all", layer_decay=0.5, verbose=0)
    optimizer = model.optimizer
    assert isinstance(optimizer, kt.LayerwiseLearningRates)
    factors = {
        layer: optimizer.learning_rate_factor(model.backbone.get_layer(layer).kernel) for layer in ("conv1", "conv3")
    }
    head = optimizer.learning_rate_factor(model.get_layer("predictions").kernel)
    assert head == 1.0 and factors["conv3"] > factors["conv1"] > 0


def test_bad_strategy_options_fail_before_training():
    train, _, _ = image_dataset(n=8, batch_size=8)
    model = tiny_classifier()
    with pytest.raises(ValueError, match="Unknown schedule"):
        model.fine_tune(train, schedule="cyclic", verbose=0)
    with pytest.raises(ValueError, match="layer_decay"):
        model.fine_tune(train, layer_decay=2.0, verbose=0)
    with pytest.raises(ValueError, match="length is unknown"):
        model.fine_tune(train.filter(lambda x, y: True), schedule="one_cycle", verbose=0)
