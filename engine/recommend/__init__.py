"""Product recommendations from the engine's model and the purchase history (see recommender.py)."""
