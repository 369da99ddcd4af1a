from tests.worker.engine_fixtures import tiny_engine, tiny_models  # noqa: F401  (fixtures)
