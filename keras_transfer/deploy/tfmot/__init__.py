"""TF-MOT on Keras 3 models: the Keras 3 -> tf_keras bridge, quantization-aware training, pruning, clustering."""
