"""`AdaptationTrainer`: trains a task on labelled source batches with an adaptation loss on both domains.

A Keras model around the task (sharing its layers, so the task is what
trains) whose `train_step` takes `((source inputs, source labels), target
inputs)`: the classification loss on the source, plus DANN's domain loss
through a gradient-reversal layer, or a CORAL or MMD loss between the two
domains' features (the features the task's head takes). Image batches of
both domains go through the backbone together, so a BatchNormalization layer
in training mode normalises them with shared statistics; token batches
(padded to different lengths) go through one after the other (transformers
have no BatchNormalization).
"""

import keras
import tensorflow as tf

from keras_transfer.adaptation.losses import coral_loss, mmd_loss
from keras_transfer.adaptation.methods import DOMAIN_CLASSIFIER_UNITS, TRAINING_METHODS
from keras_transfer.adaptation.reversal import GradientReversal


class AdaptationTrainer(keras.Model):
    """Trains `model` with the source's labels and an adaptation `method` on both domains.

    Args:
        model: a keras_transfer task (`ImageClassifier`, `TextClassifier`).
        method: `"dann"`, `"coral"` or `"mmd"`.
        weight: the adaptation loss's weight (DANN: the reversal weight's
            maximum; set along the schedule by `ReversalSchedule`).
        domain_units: hidden units of DANN's domain classifier.

    Calling it calls `model`; validation (`test_step`) scores `model` on
    labelled batches as usual.
    """

    def __init__(self, model, method, weight=1.0, *, domain_units=DOMAIN_CLASSIFIER_UNITS, **kwargs):
        super().__init__(name=f"{model.name}_{method}", **kwargs)
        if method not in TRAINING_METHODS:
            raise ValueError(f"AdaptationTrainer trains with {', '.join(TRAINING_METHODS)}, not {method!r}.")
        self.task, self.method, self.weight = model, method, float(weight)
        self.features = model.feature_extractor()
        self.head = model.head_model()
        self.reversal = self.domain_classifier = None
        if method == "dann":
            self.reversal = GradientReversal(0.0, name="gradient_reversal")
            self.domain_classifier = keras.Sequential(
                [
                    keras.layers.Dense(int(domain_units), activation="relu", name="domain_hidden"),
                    keras.layers.Dense(1, dtype="float32", name="domain_logit"),
                ],
                name="domain_classifier",
            )
        self.adaptation_tracker = keras.metrics.Mean(name=f"{method}_loss")

    def call(self, inputs, training=False):
        return self.task(inputs, training=training)

    def domain_features(self, source_inputs, target_inputs):
        """The head's input features of both domains, from one backbone pass for images."""
        if not isinstance(source_inputs, dict):
            both = self.features(tf.concat([source_inputs, target_inputs], axis=0), training=True)
            count = tf.shape(source_inputs)[0]
            return both[:count], both[count:]
        return self.features(source_inputs, training=True), self.features(target_inputs, training=True)

    def adaptation_loss(self, source_features, target_features):
        """DANN's domain-classification loss, or the weighted CORAL or MMD loss."""
        if self.method == "coral":
            return self.weight * coral_loss(source_features, target_features)
        if self.method == "mmd":
            return self.weight * mmd_loss(source_features, target_features)
        both = tf.cast(tf.concat([source_features, target_features], axis=0), tf.float32)
        logits = self.domain_classifier(self.reversal(both), training=True)
        domains = tf.concat(
            [tf.zeros_like(source_features[:, :1], tf.float32), tf.ones_like(target_features[:, :1], tf.float32)],
            axis=0,
        )
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits))

    def train_step(self, data):
        (source_inputs, source_labels), target_inputs = data
        with tf.GradientTape() as tape:
            source_features, target_features = self.domain_features(source_inputs, target_inputs)
            predictions = self.head(source_features, training=True)
            classification = self.compute_loss(x=source_inputs, y=source_labels, y_pred=predictions)
            adaptation = self.adaptation_loss(source_features, target_features)
            loss = self.optimizer.scale_loss(classification + adaptation)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        # `loss` is what was minimised, as in Keras's own train_step; `<method>_loss` its adaptation part.
        self._loss_tracker.update_state(classification + adaptation, sample_weight=tf.shape(source_labels)[0])
        self.adaptation_tracker.update_state(adaptation)
        return self.compute_metrics(source_inputs, source_labels, predictions)

    def test_step(self, data):
        results = super().test_step(data)
        results.pop(self.adaptation_tracker.name, None)  # measured on training batches only
        return results
