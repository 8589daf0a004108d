from tests.rewards.credit_helpers import package, sandbox  # noqa: F401 - fixtures
