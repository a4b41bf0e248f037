"""Getting a trained model onto a device: quantization, TFLite/SavedModel export, LiteRT, reports."""
