"""Zero-shot classification: classes given as names or descriptions, no labelled examples.

Each class's prompts (its name or descriptions in a template such as
"This text is about {}.") are embedded by the model's own encoder, and each
input goes to the class whose prompt embedding is nearest by cosine
similarity. The result is an ordinary keras_transfer model with a cosine head
(`Head.cosine`) whose class vectors are the prompt embeddings, so `predict`,
`evaluate_report`, `export_model`, `save` and `keras.saving.load_model` work
as for any trained model.

Modules: prompts (templates and descriptions -> prompts), text (sentence
embeddings: `zero_shot_classifier`), image (CLIP / SigLIP:
`zero_shot_image_classifier`).
"""

from keras_transfer.zeroshot.image import zero_shot_image_classifier
from keras_transfer.zeroshot.prompts import DEFAULT_IMAGE_TEMPLATE, DEFAULT_TEMPLATE, class_prompts, class_vectors
from keras_transfer.zeroshot.text import sentence_embedding_pooling, set_class_prompts, zero_shot_classifier
