"""Fine-tuning strategies as Keras callbacks: progressive (gradual) unfreezing.

ULMFiT and fastai unfreeze a pretrained network from the top, one layer group
per epoch, so that the new head settles before the features below it move.
`ProgressiveUnfreezing` does that inside one `model.fit`, with the blocks of
`keras_transfer.finetune.layer_blocks.layer_blocks`. Three Keras details make it work:

- A change of `trainable` reaches training only through a new train function:
  Keras 3's `fit` calls `self.train_function(...)` every step, a `tf.function`
  traced once, so the callback calls `model.make_train_function(force=True)`
  after each change (the advice of `Layer.trainable`'s docstring).
- A Keras 3 optimizer refuses variables it was not built with
  (`BaseOptimizer._check_variables_are_known`) but accepts any subset of them,
  so the optimizer is built at the start of training over every variable the
  schedule will open: layers that already train keep their slots, and newly
  opened layers start from fresh (zero) slots when their turn comes.
- BatchNormalization layers stay frozen, in inference mode, throughout
  (`keras_transfer.finetune.freezing.unfreeze`), so their moving statistics keep the
  pretrained values.
"""

import collections.abc
import contextlib

import keras

from keras_transfer.finetune.freezing import freeze, unfreeze
from keras_transfer.finetune.layer_blocks import layer_blocks


class ProgressiveUnfreezing(keras.callbacks.Callback):
    """Unfreezes a backbone block by block from the top, on an epoch schedule.

    When training begins the backbone is frozen; then, at the start of each
    epoch, the top blocks the schedule asks for are unfrozen (never frozen
    again) and the train function is rebuilt. Layers outside the backbone (the
    head) keep their own state. BatchNormalization layers of the backbone stay
    frozen and in inference mode. The optimizer is built over every variable
    the fit will train; one already built over others (by an earlier fit, or
    by `fit` itself under a distribution strategy) is replaced by a copy built
    so, with its step count, rate and slots carried over.

    Two ways to give the schedule:

    - `blocks_per_epoch=k` (the default, k=1): the first epoch of each `fit`
      trains with `initial_blocks` top blocks unfrozen (0: the head only, as in
      ULMFiT), and every later epoch unfreezes `k` more.
    - `schedule={epoch: top_blocks}`: the number of top blocks unfrozen from
      that epoch on, epochs counted as Keras counts them (0-based, continuing
      from `fit`'s `initial_epoch`, as `keras.callbacks.LearningRateScheduler`
      does); before the first key, `initial_blocks`. Counts may not decrease.

    A count above the number of blocks means the whole backbone. At the end
    of training the backbone stays as the schedule left it. Give the callback
    to `fit`, or to `TransferModel.fine_tune` as `unfreeze=` (its fine-tuning
    phase then opens the backbone this way); not in `fine_tune`'s
    `callbacks`, which run in both of its phases.

    Newly opened layers start with zero optimizer slots but the optimizer's
    global step count (Keras keeps no step per variable), so Adam's bias
    correction no longer damps their first updates: for steady gradients they
    run at a few times the learning rate over their first hundred or so steps,
    as RMSprop's first steps do. A lower rate for the lower blocks
    (`keras_transfer.finetune.layerwise.depth_decay`) tempers that.

    Args:
        blocks_per_epoch: blocks unfrozen per epoch (default 1); not with `schedule`.
        schedule: `{epoch: number of top blocks unfrozen}`.
        initial_blocks: top blocks unfrozen from the first epoch.
        backbone: the model (or nested model) to unfreeze; by default the
            trained model's `.backbone` (a `TransferModel`'s). Pass the model
            itself to unfreeze all of a plain model's layers, head included.
        blocks: the backbone's blocks, bottom to top, as lists of its layers or
            layer names; by default `layer_blocks(backbone)`.
        verbose: 1 to print what is unfrozen when.

    Attributes:
        unfrozen_layers: `{epoch: [names of the layers unfrozen then]}` of the last fit.

    Example:
    >>> model = kt.ImageClassifier("mobilenet_v2", num_classes=2, weights=None, image_size=32)
    >>> model.compile("adam", learning_rate=1e-4)
    >>> images, labels = np.full((4, 32, 32, 3), 128.0), np.array([0, 1, 0, 1])
    >>> unfreezing = ProgressiveUnfreezing(blocks_per_epoch=2)
    >>> history = model.fit(images, labels, epochs=3, callbacks=[unfreezing], verbose=0)
    >>> {epoch: names[:2] for epoch, names in unfreezing.unfrozen_layers.items()}
    {1: ['block_16_expand', 'block_16_depthwise'], 2: ['block_14_expand', 'block_14_depthwise']}
    """

    def __init__(
        self, blocks_per_epoch=None, *, schedule=None, initial_blocks=0, backbone=None, blocks=None, verbose=0
    ):
        super().__init__()
        if schedule is not None and blocks_per_epoch is not None:
            raise ValueError("Give either blocks_per_epoch or schedule, not both.")
        _check_count("initial_blocks", initial_blocks)
        if schedule is None:
            blocks_per_epoch = 1 if blocks_per_epoch is None else blocks_per_epoch
            _check_count("blocks_per_epoch", blocks_per_epoch, minimum=1)
        else:
            schedule = _checked_schedule(schedule, initial_blocks)
        if backbone is not None and not isinstance(getattr(backbone, "layers", None), list):
            raise TypeError(f"backbone must be a keras.Model (something with .layers), got {backbone!r}.")
        self.blocks_per_epoch = blocks_per_epoch
        self.schedule = schedule
        self.initial_blocks = initial_blocks
        self.backbone = backbone
        self.blocks = blocks
        self.verbose = verbose
        self.unfrozen_layers = {}

    # --- the schedule ----------------------------------------------------

    def blocks_at(self, epoch, first_epoch=0):
        """How many top blocks train in `epoch` of a fit that began at `first_epoch`."""
        if self.schedule is None:
            return self.initial_blocks + self.blocks_per_epoch * (epoch - first_epoch)
        reached = [count for start, count in self.schedule.items() if start <= epoch]
        return reached[-1] if reached else self.initial_blocks

    def _top_names(self, count):
        count = min(count, len(self._blocks))
        return [name for block in self._blocks[len(self._blocks) - count :] for name in block]

    # --- events ------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._backbone = self._find_backbone(self.model)
        self._blocks = self._block_names(self._backbone)
        self._unfrozen_count = 0
        self._first_epoch = None
        self.unfrozen_layers = {}

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            # Known from here on: fit()'s initial_epoch, so which blocks this fit opens.
            self._first_epoch = epoch
            self._start()
        count = min(self.blocks_at(epoch, self._first_epoch), len(self._blocks))
        if count <= self._unfrozen_count:
            return
        unfrozen = self._unfreeze(self._top_names(count))
        self._unfrozen_count = count
        self.unfrozen_layers[epoch] = unfrozen
        # fit() calls self.train_function every step: trace it again so that the
        # newly trainable variables get gradients.
        self.model.make_train_function(force=True)
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: {count}/{len(self._blocks)} top blocks of "
                f"{self._backbone.name} trainable (unfroze {', '.join(unfrozen) or 'no weights'})."
            )

    # --- helpers -------------------------------------------------------------

    def _find_backbone(self, model):
        backbone = self.backbone if self.backbone is not None else getattr(model, "backbone", None)
        if backbone is None:
            raise ValueError(
                f"{model.name} has no .backbone: pass ProgressiveUnfreezing(backbone=...) the "
                "part to unfreeze (the model itself to unfreeze all its layers)."
            )
        if not any(layer is backbone for layer in model._flatten_layers(include_self=True)):
            raise ValueError(f"The backbone {backbone.name!r} is not part of the trained model {model.name!r}.")
        if any(getattr(layer, "lora_enabled", False) for layer in backbone._flatten_layers()):
            raise ValueError(
                f"{backbone.name} trains through LoRA adapters; progressive unfreezing would "
                "train whole layers instead. Use one or the other."
            )
        return backbone

    def _block_names(self, backbone):
        blocks = layer_blocks(backbone) if self.blocks is None else self.blocks
        names = [[item if isinstance(item, str) else item.name for item in block] for block in blocks]
        known = {layer.name for layer in backbone.layers}
        unknown = sorted({name for block in names for name in block} - known)
        if unknown:
            raise ValueError(
                f"blocks name layers that {backbone.name} does not have at its top level: "
                f"{', '.join(unknown[:5])}. Use layers of backbone.layers (see layer_blocks)."
            )
        return names

    def _start(self):
        """Freezes the backbone, with the optimizer built over all the variables this fit opens."""
        epochs = self.params.get("epochs") if self.params else None
        most = len(self._blocks) if epochs is None else self.blocks_at(epochs - 1, self._first_epoch)
        self._freeze_backbone()
        self._unfreeze(self._top_names(most))
        variables = list(self.model.trainable_variables)
        self._freeze_backbone()
        _build_optimizer_over(self.model, variables)
        self.model.make_train_function(force=True)

    def _freeze_backbone(self):
        with _without_recompiling(self._backbone):
            freeze(self._backbone)

    def _unfreeze(self, names):
        """Unfreezes the backbone's layers `names` but BatchNormalization; returns the names newly unfrozen."""
        backbone = self._backbone
        with _without_recompiling(backbone):
            unfrozen = unfreeze(backbone, names=names)
        # unfreeze() keeps the backbone's own BatchNormalization layers frozen;
        # those inside a composite layer follow its trainable flag down.
        for name in names:
            for layer in backbone.get_layer(name)._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        return unfrozen


def _check_count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def _checked_schedule(schedule, initial_blocks):
    if not isinstance(schedule, collections.abc.Mapping) or not schedule:
        raise ValueError(
            f"schedule must be a non-empty dict {{epoch: number of top blocks unfrozen}}, got {schedule!r}: "
            "e.g. {0: 1, 2: 3, 4: 100}."
        )
    for epoch, count in schedule.items():
        _check_count(f"schedule epoch {epoch!r}", epoch)
        _check_count(f"the block count of epoch {epoch}", count)
    schedule = dict(sorted(schedule.items()))
    previous = initial_blocks
    for epoch, count in schedule.items():
        if count < previous:
            raise ValueError(
                f"schedule goes down to {count} blocks at epoch {epoch} from {previous} before: "
                "blocks unfrozen stay unfrozen, so counts may not decrease."
            )
        previous = count
    return schedule


@contextlib.contextmanager
def _without_recompiling(model):
    # freeze()/unfreeze() recompile a compiled model, which in the middle of
    # fit() would replace the optimizer and lose its state; here the optimizer
    # already knows every variable the schedule opens.
    compiled = getattr(model, "compiled", False)
    if compiled:
        model.compiled = False
    try:
        yield
    finally:
        if compiled:
            model.compiled = True


def _build_optimizer_over(model, variables):
    """Builds `model.optimizer` over `variables`, or replaces it by a copy built so.

    Exactly these variables, in this order, are those a model saved at the end
    of the schedule trains, and so those `load_model` builds the optimizer over
    and gives the saved optimizer state to.
    """
    optimizer = model.optimizer
    if not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(variables)
        return
    # A LossScaleOptimizer (mixed precision) keeps the variables in its inner optimizer.
    built_over = getattr(optimizer, "inner_optimizer", optimizer)._trainable_variables
    if [optimizer._var_key(variable) for variable in built_over] == [
        optimizer._var_key(variable) for variable in variables
    ]:
        return
    # Built before (by fit under a distribution strategy, an earlier fit, a
    # loaded model) over other variables: a built optimizer takes no new ones,
    # so a copy is built and given the old state by name (step count, rate, and
    # the slots of the variables both know, which are named after them).
    with model.distribute_strategy.scope():
        replacement = type(optimizer).from_config(optimizer.get_config())
        replacement.build(variables)
    names = collections.Counter(variable.name for variable in optimizer.variables)
    old = {variable.name: variable for variable in optimizer.variables if names[variable.name] == 1}
    for variable in replacement.variables:
        source = old.get(variable.name)
        if source is not None and tuple(source.shape) == tuple(variable.shape):
            variable.assign(source)
    model.optimizer = replacement
