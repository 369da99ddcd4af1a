from tests.worker.engine_fixtures import tiny_models  # noqa: F401  (fixture)
