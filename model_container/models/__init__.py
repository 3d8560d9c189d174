"""Example model packages built from scikit-learn's bundled datasets: each directory holds `model_card.json` (the
authored part of the model card) and `train.py` (`load` and `train`, the entry points of `model.source`)."""
