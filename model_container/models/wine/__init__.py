"""An example model package (see model_card.json and train.py)."""
