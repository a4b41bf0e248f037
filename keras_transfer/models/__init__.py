"""Transfer-learning tasks: a pretrained backbone, a new head, and what they share."""

from keras_transfer.models.heads import Head
from keras_transfer.models.image_classifier import ImageClassifier
from keras_transfer.models.layers import BackbonePreprocessing, TokenPooling
from keras_transfer.models.text_classifier import TextClassifier
from keras_transfer.models.transfer_model import TransferModel
