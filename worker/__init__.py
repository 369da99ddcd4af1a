"""The engine worker: takes jobs from the store, runs them on the engine, reports back.

The only place where ``engine`` meets ``db``. Importing this package does not
import torch; ``worker.worker`` does.
"""
